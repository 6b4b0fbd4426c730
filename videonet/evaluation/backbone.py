"""Load a ResNet backbone from any checkpoint we compare (the stage plumbing is :mod:`videonet.torch_utils`).

Accepted checkpoint specs (the same string everywhere in ``videonet eval``):

* a torchvision ResNet state-dict file (``backbone.pt`` exported by ``videonet train``, or any
  ``torchvision.models.resnet*`` state dict); the architecture is detected from the keys and
  ``fc.*`` may be absent because evaluation never uses the ImageNet head. Local, ``http(s)://``
  or any Beam filesystem URL (``gs://``, ``s3://``, ...);
* a trainer run directory containing ``backbone.pt`` (local, or a ``gs://``/``s3://`` prefix);
* the literal ``random``: a randomly initialised network (seeded), the floor every method must beat;
* a torchvision weights enum name such as ``ResNet50_Weights.IMAGENET1K_V2`` (downloaded through
  torch hub, or read from its cache), the supervised baseline.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models

from videonet.errors import UserError
from videonet.torch_utils import ARCHS, BACKBONE_FILE, build_resnet, in_run_dir, is_url, read_backbone, stage_channels

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
        return stage_channels(self.model, "layer4")


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
    model.fc = nn.Identity()
    return model, builder


def _label(file: str) -> str:
    """Table label of a state-dict file: its stem, or its run dir's name for ``.../backbone.pt``."""
    if is_url(file):
        url = urlparse(file)
        path = PurePosixPath(url.netloc + url.path)  # gs://bucket/run/backbone.pt -> bucket/run/backbone.pt
        stem, parent = path.stem, path.parent.name
    else:
        stem, parent = Path(file).stem, Path(file).parent.resolve().name
    return stem if stem != "backbone" else parent


def load_backbone(spec: str, arch: str | None = None, seed: int = 0) -> LoadedBackbone:
    """Build the backbone named by ``spec`` (see module docstring) with its ``fc`` replaced by identity.

    ``arch`` picks the architecture for ``random`` (default resnet50) and is checked against the
    detected one otherwise, so a table never silently compares a resnet18 with a resnet50.
    """
    if arch is not None and arch not in ARCHS:
        raise UserError(f"--arch must be one of {', '.join(ARCHS)}, not {arch!r}")
    path = Path(spec)
    if spec == "random":
        torch.manual_seed(seed)
        arch = arch or "resnet50"
        model, name = build_resnet(arch), "random"
    elif is_url(spec) or path.exists():
        file = in_run_dir(spec, BACKBONE_FILE)
        if not is_url(file) and not Path(file).is_file():
            raise UserError(f"{path} has no {BACKBONE_FILE} (is it a `videonet train` output dir?)")
        model, arch = read_backbone(file, arch)
        name = _label(file)
    elif "_Weights." in spec:
        model, arch = _from_weights_enum(spec, arch)
        name = spec
    else:
        raise UserError(f"checkpoint {spec!r} not found: give {CHECKPOINT_HELP}")
    return LoadedBackbone(model=model.eval(), arch=arch, source=spec, name=name)


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
