"""The VITO network: torchvision ResNet backbone, multi-scale attention pooling, MLP projector/predictor.

VITO replaces global average pooling by *attention pooling*: per scale (the outputs of ResNet
blocks 3 and 4, S = 2) a 2-layer MLP of 1x1 convolutions scores every spatial position, a softmax
over space turns the scores into weights, and the features are averaged with those weights; the
pooled vectors of the scales are concatenated. With video views that differ in time, this lets the
network attend to what persists (the object) instead of averaging over the changing background.
``pooling="avg"`` and ``scales=1`` give the ablations (global average pooling, block 4 only).

The backbone is a *plain torchvision ResNet* whose ``fc`` is replaced by ``nn.Identity`` (which has no
parameters), so its ``state_dict()`` is exactly a torchvision ResNet state dict without ``fc.*``;
that is what :mod:`videonet.vito.train` exports as ``backbone.pt``. The pooling modules export
separately (``attention.pt``, see :meth:`MultiScalePooling.export`).

The online branch is encoder -> pooling -> projector -> predictor (the predictor of BYOL/MoCLR);
the target branch (an EMA copy, :mod:`videonet.vito.ema`) is encoder -> pooling -> projector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from videonet.torch_utils import STAGES, build_resnet, forward_stages, load_torch, read_backbone, stage_channels

if TYPE_CHECKING:
    from torchvision.models import ResNet

ATTENTION_FORMAT = "videonet.vito.attention/1"


class Backbone(nn.Module):
    """A torchvision ResNet returning the feature maps of its last ``scales`` stages (block 4 last).

    ``net`` wraps an already loaded ResNet of that ``arch`` (see :func:`load_exported`) instead of a
    freshly initialised one.
    """

    def __init__(self, arch: str = "resnet50", scales: int = 2, net: ResNet | None = None) -> None:
        super().__init__()
        if scales not in (1, 2):
            raise ValueError("scales must be 1 (block 4) or 2 (blocks 3 and 4)")
        self.arch = arch
        self.net = net if net is not None else build_resnet(arch)
        self.layers = STAGES[-scales:]
        self.dims = [stage_channels(self.net, name) for name in self.layers]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = forward_stages(self.net, x, self.layers)
        return [maps[name] for name in self.layers]


class AttentionPool(nn.Module):
    """Softmax-over-space weighted average; the logits come from a 2-layer 1x1-conv MLP."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H*W)`` attention weights, summing to 1 over space (computed in float32)."""
        return torch.softmax(self.score(x).flatten(1).float(), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weights(x).to(x.dtype)
        return torch.einsum("bchw,bhw->bc", x, w.view(x.shape[0], *x.shape[2:]))


class AvgPool(nn.Module):
    """Global average pooling (the ablation / the plain ResNet head)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class MultiScalePooling(nn.Module):
    """One pooling module per scale; the pooled vectors are concatenated in backbone order."""

    def __init__(self, dims: list[int], layers: list[str], pooling: str = "attn", hidden: int = 512) -> None:
        super().__init__()
        if pooling not in ("attn", "avg"):
            raise ValueError("pooling must be 'attn' or 'avg'")
        self.dims, self.layers, self.pooling, self.hidden = list(dims), list(layers), pooling, hidden
        self.pools = nn.ModuleList(AttentionPool(d, hidden) if pooling == "attn" else AvgPool() for d in dims)
        self.out_dim = sum(dims)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([pool(f) for pool, f in zip(self.pools, features, strict=True)], dim=1)

    def export(self, arch: str) -> dict[str, Any]:
        """The self-describing dict saved as ``attention.pt`` (see :mod:`videonet.vito.train`)."""
        return {
            "format": ATTENTION_FORMAT,
            "arch": arch,
            "pooling": self.pooling,
            "layers": self.layers,
            "dims": self.dims,
            "hidden": self.hidden,
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_export(cls, blob: dict[str, Any]) -> "MultiScalePooling":
        """Rebuild the pooling from :meth:`export`'s dict (e.g. ``torch.load("attention.pt")``)."""
        if blob.get("format") != ATTENTION_FORMAT:
            raise ValueError(f"not a VITO attention export (format {blob.get('format')!r})")
        pool = cls(blob["dims"], blob["layers"], blob["pooling"], blob["hidden"])
        pool.load_state_dict(blob["state_dict"])
        return pool


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """BYOL's projector/predictor: Linear -> BatchNorm -> ReLU -> Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
    )


class VitoNet(nn.Module):
    """Encoder + multi-scale pooling + projector: the part shared by the online and target branches."""

    def __init__(
        self,
        arch: str = "resnet50",
        pooling: str = "attn",
        scales: int = 2,
        proj_hidden: int = 4096,
        proj_dim: int = 256,
        attn_hidden: int = 512,
    ) -> None:
        super().__init__()
        self.encoder = Backbone(arch, scales)
        self.pool = MultiScalePooling(self.encoder.dims, list(self.encoder.layers), pooling, attn_hidden)
        self.projector = mlp(self.pool.out_dim, proj_hidden, proj_dim)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled representation (what downstream evaluation uses)."""
        return self.pool(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.represent(x))


class Online(nn.Module):
    """The trained branch: :class:`VitoNet` followed by the predictor MLP."""

    def __init__(self, net: VitoNet, proj_hidden: int, proj_dim: int) -> None:
        super().__init__()
        self.net = net
        self.predictor = mlp(proj_dim, proj_hidden, proj_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.net(x))


def load_exported(backbone_path: str, attention_path: str) -> tuple[Backbone, MultiScalePooling]:
    """Load ``backbone.pt`` and ``attention.pt`` (local, http(s) or any Beam filesystem path) at once.

    ``pool(backbone(images))`` is then the VITO representation (``pool.out_dim`` features).
    """
    blob = load_torch(attention_path, "attention export")
    pool = MultiScalePooling.from_export(blob)
    net, arch = read_backbone(backbone_path, blob["arch"])
    return Backbone(arch, len(blob["layers"]), net), pool
