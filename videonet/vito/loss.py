"""The contrastive objective of VITO (MoCLR-style InfoNCE between online predictions and EMA targets).

Each view's online prediction must pick out the target projection of *another view of the same
clip* among the target projections of all clips of the (global) batch for that view. Vectors are
L2-normalised and scaled to norm ``1/sqrt(tau)`` so a dot product is ``cos / tau``; tau = 0.1 as in
the paper. The loss is summed over every ordered pair of views ``i != j`` (3 views: 6 terms), so the
objective is symmetric and every view is both a query and a key.

Negatives come from every process: when ``torch.distributed`` is initialised the targets are
gathered with ``all_gather`` (they carry no gradient, so no autograd-aware gather is needed) and the
positive of local sample ``b`` on rank ``r`` sits at column ``r * B + b``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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


def info_nce(online: list[torch.Tensor], target: list[torch.Tensor], tau: float = 0.1) -> torch.Tensor:
    """Sum over ordered view pairs (i, j), i != j, of the mean InfoNCE of online[i] against target[j].

    ``online[v]`` and ``target[v]`` are ``(B, D)`` for view ``v``; ``target`` must be detached.
    """
    if len(online) != len(target) or len(online) < 2:
        raise ValueError("info_nce needs the same number (>= 2) of online and target views")
    queries = [scale(q, tau) for q in online]
    keys = []
    offset = 0
    for k in target:
        gathered, offset = gather_targets(scale(k, tau))
        keys.append(gathered)
    labels = torch.arange(online[0].shape[0], device=online[0].device) + offset
    loss = online[0].new_zeros((), dtype=torch.float32)
    for i, q in enumerate(queries):
        for j, k in enumerate(keys):
            if i != j:
                loss = loss + F.cross_entropy(q @ k.T, labels)
    return loss
