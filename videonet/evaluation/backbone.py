"""Load a ResNet backbone from any checkpoint we compare, and read features at intermediate layers.

Accepted checkpoint specs (the same string everywhere in ``videonet eval``):

* a torchvision ResNet state-dict file (``backbone.pt`` exported by ``videonet train``, or any
  ``torchvision.models.resnet*`` state dict); the architecture is detected from the keys and
  ``fc.*`` may be absent because evaluation never uses the ImageNet head;
* a trainer run directory containing ``backbone.pt``;
* the literal ``random``: a randomly initialised network (seeded), the floor every method must beat;
* a torchvision weights enum name such as ``ResNet50_Weights.IMAGENET1K_V2`` (downloaded through
  torch hub, or read from its cache), the supervised baseline.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn
from torchvision import models

from videonet.errors import UserError

LAYERS = ("layer1", "layer2", "layer3", "layer4")

# Blocks per stage and whether the blocks are bottlenecks, as in torchvision's constructors.
ARCHS: dict[tuple[tuple[int, ...], bool], str] = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
}

CHECKPOINT_HELP = (
    "a ResNet state-dict file, a training run dir with backbone.pt, 'random', "
    "or a torchvision weights name such as ResNet50_Weights.IMAGENET1K_V2"
)


@dataclass(frozen=True)
class LoadedBackbone:
    """A ResNet without its classifier, plus what the reports need to say about it."""

    model: models.ResNet
    arch: str
    source: str  # the checkpoint spec as given, recorded in every result file
    name: str  # a short label for tables: run dir name, file stem, 'random' or the weights name

    @property
    def feature_dim(self) -> int:
        """Width of the pooled ``layer4`` features (2048 for resnet50, 512 for resnet18)."""
        return channels(self.model, "layer4")


def detect_arch(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the torchvision ResNet whose keys these are, from the blocks per stage and block type."""
    blocks = []
    for layer in LAYERS:
        indices = {int(k.split(".")[1]) for k in state_dict if k.startswith(layer + ".")}
        blocks.append(max(indices) + 1 if indices else 0)
    bottleneck = any(k.endswith("conv3.weight") for k in state_dict)
    arch = ARCHS.get((tuple(blocks), bottleneck))
    if arch is None:
        raise UserError(f"state dict is not a torchvision ResNet (blocks per stage {blocks}, bottleneck={bottleneck})")
    return arch


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a plain ``{name: tensor}`` file without executing pickled code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise UserError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state dict of tensors (expected the backbone.pt that `videonet train` exports)")
    return dict(state)


def _from_state_dict(path: Path, arch: str | None) -> tuple[models.ResNet, str]:
    state = _read_state_dict(path)
    detected = detect_arch(state)
    if arch is not None and arch != detected:
        raise UserError(f"{path} holds a {detected}, not the requested --arch {arch}")
    model = getattr(models, detected)()
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        bad = (missing + result.unexpected_keys)[:3]
        raise UserError(f"{path} does not match torchvision {detected}: e.g. {', '.join(bad)}")
    return model, detected


def _from_weights_enum(spec: str, arch: str | None) -> tuple[models.ResNet, str]:
    try:
        weights = models.get_weight(spec)
    except (ValueError, KeyError, AttributeError) as exc:
        raise UserError(f"unknown checkpoint {spec!r}: give {CHECKPOINT_HELP}") from exc
    builder = spec.split("_Weights")[0].lower()
    if not builder.startswith("resnet") or not hasattr(models, builder):
        raise UserError(f"{spec} is not a ResNet weights name")
    if arch is not None and arch != builder:
        raise UserError(f"{spec} is a {builder}, not the requested --arch {arch}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torch hub prints "Downloading: ..." even when it fails
            state = weights.get_state_dict(progress=False)
    except Exception as exc:  # URLError, SSL errors, HTTP errors: all mean "no download possible"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"cannot download {spec} ({reason}); put {weights.url.rsplit('/', 1)[-1]} in "
            f"{torch.hub.get_dir()}/checkpoints or pass a state-dict file"
        ) from exc
    model = getattr(models, builder)()
    model.load_state_dict(state)
    return model, builder


def load_backbone(spec: str, arch: str | None = None, seed: int = 0) -> LoadedBackbone:
    """Build the backbone named by ``spec`` (see module docstring) with its ``fc`` replaced by identity.

    ``arch`` picks the architecture for ``random`` (default resnet50) and is checked against the
    detected one otherwise, so a table never silently compares a resnet18 with a resnet50.
    """
    if arch is not None and arch not in ARCHS.values():
        raise UserError(f"--arch must be one of {', '.join(ARCHS.values())}, not {arch!r}")
    path = Path(spec)
    if spec == "random":
        torch.manual_seed(seed)
        arch = arch or "resnet50"
        model, name = getattr(models, arch)(), "random"
    elif path.is_dir():
        if not (path / "backbone.pt").is_file():
            raise UserError(f"{path} has no backbone.pt (is it a `videonet train` output dir?)")
        model, arch = _from_state_dict(path / "backbone.pt", arch)
        name = path.resolve().name
    elif path.is_file():
        model, arch = _from_state_dict(path, arch)
        name = path.stem if path.stem != "backbone" else path.resolve().parent.name
    elif "_Weights." in spec:
        model, arch = _from_weights_enum(spec, arch)
        name = spec
    else:
        raise UserError(f"checkpoint {spec!r} not found: give {CHECKPOINT_HELP}")
    model.fc = nn.Identity()
    return LoadedBackbone(model=model.eval(), arch=arch, source=spec, name=name)


def channels(model: models.ResNet, layer: str) -> int:
    """Output width of ``layer`` (read from the weights, so it works for any block type)."""
    last_block = getattr(model, layer)[-1]
    last_bn = last_block.bn3 if hasattr(last_block, "bn3") else last_block.bn2
    return last_bn.num_features


def forward_layers(model: models.ResNet, images: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
    """Feature maps (N, C, h, w) at the requested stages; stops after the deepest one needed."""
    wanted = set(layers)
    unknown = wanted - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown layers {sorted(unknown)}; choose from {LAYERS}")
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    out: dict[str, torch.Tensor] = {}
    for name in LAYERS:
        x = getattr(model, name)(x)
        if name in wanted:
            out[name] = x
            if len(out) == len(wanted):
                break
    return out


def remove_stride(model: models.ResNet, layer: str) -> models.ResNet:
    """Make ``layer`` keep its input resolution, as in the CRW/VFS label-propagation protocol.

    Only the first block of a stage downsamples (its 3x3 conv, or conv1 for basic blocks, and the
    1x1 projection); setting those strides to 1 without dilation reuses the pretrained weights
    unchanged and turns layer3 ("res4") from stride 16 into stride 8. Modifies ``model`` in place.
    """
    for module in getattr(model, layer)[0].modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)
    return model


def pick_device(device: str) -> torch.device:
    """``auto`` means the GPU when there is one; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"bad --device {device!r}: {exc}") from exc
