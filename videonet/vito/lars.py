"""LARS (You et al.) as used by SimCLR/BYOL/MoCLR/VITO, and the warmup + cosine learning-rate schedule.

Large-batch self-supervised training scales each layer's step by a trust ratio
``eta * ||w|| / ||g + wd * w||`` so that the relative update per layer is about ``lr * eta``
whatever the gradient scale. Biases and BatchNorm parameters (every 1-D tensor) are excluded from
both weight decay and the trust ratio, as in BYOL: decaying or rescaling them hurts and they are
tiny. :func:`param_groups` makes that split; the optimizer reads the flags per group.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights (decay + adaptation) and biases/BN, i.e. all 1-D params (neither)."""
    adapted, plain = [], []
    for p in model.parameters():
        if p.requires_grad:
            (plain if p.ndim <= 1 else adapted).append(p)
    return [
        {"params": adapted, "weight_decay": weight_decay, "lars": True},
        {"params": plain, "weight_decay": 0.0, "lars": False},
    ]


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose per-tensor step is scaled by the LARS trust ratio (where ``lars``)."""

    def __init__(
        self,
        params: Iterable,
        lr: float,
        weight_decay: float = 1e-6,
        momentum: float = 0.9,
        eta: float = 1e-3,
    ) -> None:
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "eta": eta, "lars": True}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - the torch.optim.Optimizer contract
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad.clone()
                if group["lars"]:
                    w_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    trust = torch.where(
                        (w_norm > 0) & (u_norm > 0), group["eta"] * w_norm / u_norm, torch.ones_like(w_norm)
                    )
                    update.mul_(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """BYOL's schedule: ``peak * step / warmup_steps`` during the warm-up (lr 0 at step 0), then cosine
    decay from ``peak`` to 0 at ``total_steps``; no warm-up when ``warmup_steps`` is 0."""
    if step < warmup_steps:
        return peak * step / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
