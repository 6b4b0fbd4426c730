"""The contrastive objective of VITO (MoCLR-style InfoNCE between online predictions and EMA targets).

The paper's loss ``L^{ij}`` (Parthasarathy et al., NeurIPS 2023): for two views ``i != j`` of a
clip, the online prediction of view ``i`` must pick out the target projection of view ``j`` among
negatives that are target projections of *frames of the other videos in the batch*. The default,
``negatives="moclr"``, is the MoCLR/DetCon form of that (DeepMind's ``byol_nce_detcon``): the candidates of query ``b`` are the targets of view ``j`` of
every clip (its positive and B - 1 negatives) and the targets of its own view ``i`` of every
*other* clip (B - 1 more negatives; its own clip's is masked out), 2B - 1 candidates in all.
``negatives="mocov3"`` keeps only the first part (B candidates, MoCo v3's form), what videonet used
before.

Vectors are L2-normalised and scaled to norm ``1/sqrt(tau)`` so a dot product is ``cos / tau``;
tau = 0.1 as in the paper. The loss is summed over every ordered pair of views ``i != j`` (3 views:
6 terms) and averaged over the clips, so every view is both a query and a key.

Negatives come from every process: when ``torch.distributed`` is initialised the targets are
gathered with ``all_gather`` (they carry no gradient, so no autograd-aware gather is needed) and the
positive of local sample ``b`` on rank ``r`` sits at column ``r * B + b``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from videonet.vito.config import NEGATIVES


def scale(x: torch.Tensor, tau: float) -> torch.Tensor:
    """L2-normalise the last dim and scale to norm ``1/sqrt(tau)`` (dot products become cos/tau)."""
    return F.normalize(x.float(), dim=-1) / math.sqrt(tau)


def gather_targets(k: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All targets of the global batch and the offset of this rank's rows in it."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return k, 0
    world = torch.distributed.get_world_size()
    parts = [torch.empty_like(k) for _ in range(world)]
    torch.distributed.all_gather(parts, k.contiguous())
    return torch.cat(parts), torch.distributed.get_rank() * k.shape[0]


def info_nce(online: list[torch.Tensor], target: list[torch.Tensor], tau: float = 0.1,
             negatives: str = "moclr") -> torch.Tensor:
    """Sum over ordered view pairs (i, j), i != j, of the mean InfoNCE of online[i] against target[j]
    (and, with ``negatives="moclr"``, against the other clips' target[i] as further negatives).

    ``online[v]`` and ``target[v]`` are ``(B, D)`` for view ``v``; ``target`` must be detached.
    """
    if len(online) != len(target) or len(online) < 2:
        raise ValueError("info_nce needs the same number (>= 2) of online and target views")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {', '.join(NEGATIVES)}, not {negatives!r}")
    queries = [scale(q, tau) for q in online]
    keys = []
    offset = 0
    for k in target:
        gathered, offset = gather_targets(scale(k, tau))
        keys.append(gathered)
    labels = torch.arange(online[0].shape[0], device=online[0].device) + offset
    own = F.one_hot(labels, keys[0].shape[0]).bool()  # each query's own clip among the gathered targets
    loss = online[0].new_zeros((), dtype=torch.float32)
    for i, q in enumerate(queries):
        same_view = (q @ keys[i].T).masked_fill(own, -math.inf) if negatives == "moclr" else None
        for j, k in enumerate(keys):
            if i != j:
                logits = q @ k.T
                if same_view is not None:
                    logits = torch.cat([logits, same_view], dim=1)
                loss = loss + F.cross_entropy(logits, labels)
    return loss
