"""The target network: an exponential moving average of the online network (BYOL / MoCLR).

The EMA rate follows BYOL's cosine schedule from ``base`` (0.996) at step 0 to 1 at the last step:
early on the target tracks the online network quickly, at the end it freezes. Parameters and
floating-point buffers (BatchNorm running statistics) are averaged; integer buffers
(``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def ema_rate(step: int, total_steps: int, base: float = 0.996) -> float:
    """BYOL's rate ``1 - (1 - base) * (cos(pi * step / total) + 1) / 2``: ``base`` at 0, 1 at the end."""
    progress = min(step / max(total_steps, 1), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, rate: float) -> None:
    """``target = rate * target + (1 - rate) * online``, in place, tensor by tensor.

    Both modules must have the same structure (the target is a deep copy of the online network).
    """
    t_float, o_float = [], []
    for (name_t, t), (name_o, o) in zip(_tensors(target), _tensors(online), strict=True):
        if name_t != name_o:
            raise ValueError(f"EMA target and online differ: {name_t} vs {name_o}")
        if t.is_floating_point():
            t_float.append(t)
            o_float.append(o.detach())
        else:
            t.copy_(o)
    if t_float:
        torch._foreach_lerp_(t_float, o_float, 1.0 - rate)


def _tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Parameters then buffers, in a stable order, as (name, tensor)."""
    return list(module.named_parameters()) + list(module.named_buffers())
