"""The one home for the torch plumbing that the curation classifier, ``vito/`` and ``evaluation/`` share.

Like DINO's ``utils.py``: device choice, reading and writing weight files wherever they live, the
ImageNet normalisation, and the torchvision ResNet internals (stages, channels, architecture
detection, the ``backbone.pt`` format). Each existed two or three times with small differences
(one device rule rejected ``cuda`` without a GPU, another let it fail later; one weight reader knew
``gs://``, another only local files); keeping one copy here keeps every command consistent.

Paths are strings: a local path, an ``http(s)://`` URL (downloaded once into torch.hub's cache,
``$TORCH_HOME/hub/checkpoints``, the cache torchvision uses too), or any other URL that an Apache
Beam filesystem handles (``gs://``, ``s3://``, ``hdfs://`` and any scheme registered by a
``FileSystem`` subclass), so a Beam worker and a training job read a file the same way. Failures
are one-line :class:`~videonet.errors.UserError` s naming the path.

Importing this module is cheap: torch, torchvision and Beam load on first use, so the curation
CLI can import its constants without paying for them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from videonet.errors import UserError

if TYPE_CHECKING:
    import torch
    from torchvision.models import ResNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

STAGES = ("layer1", "layer2", "layer3", "layer4")
# Blocks per stage and whether the blocks are bottlenecks, as in torchvision's constructors.
RESNET_LAYOUTS: dict[tuple[tuple[int, ...], bool], str] = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
}
ARCHS = tuple(RESNET_LAYOUTS.values())
BACKBONE_FILE = "backbone.pt"
DEVICES = ("auto", "cpu", "cuda", "cuda:N")  # --device everywhere (cuda:N: one GPU of several)


def scaled_size(width: int, height: int, short_side: int = 256) -> tuple[int, int]:
    """(w, h) with the short side at ``short_side`` and the aspect ratio kept."""
    if width <= height:
        return short_side, max(short_side, round(height * short_side / width))
    return max(short_side, round(width * short_side / height)), short_side


# -- devices -------------------------------------------------------------------------------------


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA when present; asking for CUDA without one is a user error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA device is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device {device!r}: expected auto, cpu or cuda")
    return device


def torch_device(device: str) -> torch.device:
    """:func:`resolve_device` as a ``torch.device``, for code that places tensors itself."""
    import torch

    resolved = resolve_device(device)
    try:
        return torch.device(resolved)
    except RuntimeError as exc:  # e.g. "cuda:x"
        raise UserError(f"--device {device!r}: {str(exc).splitlines()[0]}") from None


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world, device): DDP under torchrun when WORLD_SIZE > 1, a single process otherwise.

    Each rank takes the GPU of its LOCAL_RANK; the process group is NCCL on GPUs, gloo on CPUs.
    Shared by ``videonet train`` and the fine-tuning evaluations, so both launch the same way.
    """
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, dev


# -- files ---------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_http(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def is_url(path: str) -> bool:
    """Whether ``path`` names a remote file (any ``scheme://``) rather than a local one."""
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> Path:
    """The local file of a non-URL path (``file://`` is accepted, as Beam users write it)."""
    return Path(path.removeprefix("file://"))


def join(base: str, name: str) -> str:
    """``base/name`` for a local directory or a remote prefix (object stores join with ``/``)."""
    return f"{base.rstrip('/')}/{name}" if is_url(base) else str(_local(base) / name)


def in_run_dir(path: str, name: str) -> str:
    """``path/name`` when ``path`` is a directory (a local one, or a remote prefix holding ``name``), else ``path``.

    Commands accept a run dir where they need one of its files (``backbone.pt``, ``checkpoint.pt``);
    object stores have no directories, so there a prefix counts as one when ``path/name`` exists.
    """
    if not is_url(path):
        return join(path, name) if _local(path).is_dir() else path
    if _is_http(path):
        return path
    from apache_beam.io.filesystems import FileSystems

    try:
        return join(path, name) if FileSystems.exists(join(path, name)) else path
    except Exception:  # an unknown scheme or an unreachable store: reading path itself says why, in one line
        return path


def _hub_cached(url: str, what: str) -> Path:
    """The file torch.hub's cache holds for ``url``, downloaded first when absent (as torchvision does)."""
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(cached), progress=True)
        except Exception as exc:  # URLError, HTTPError, SSL errors, timeouts: all mean "no download"
            raise UserError(f"cannot download {what} {url}: {_first_line(exc)}") from None
    return cached


def read_bytes(path: str, what: str = "file") -> bytes:
    """The bytes of a local file, an http(s) URL (through torch.hub's cache) or any Beam filesystem path.

    Local files are read directly: importing Beam costs a second and logs warnings, which a
    training or evaluation run reading its own files should not pay.
    """
    if _is_http(path):  # Beam has no HTTP filesystem
        path = str(_hub_cached(path, what))
    try:
        if not is_url(path):
            return _local(path).read_bytes()
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path) as fh:
            return fh.read()
    except Exception as exc:  # Beam wraps every backend's error differently
        raise UserError(f"cannot read {what} {path}: {_first_line(exc)}") from None


def load_torch(path: str, what: str = "file") -> Any:
    """``torch.load`` of :func:`read_bytes` on CPU, without executing pickled code (``weights_only``)."""
    import torch

    data = read_bytes(path, what)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise UserError(f"cannot read {what} {path}: not a torch state dict ({_first_line(exc)})") from None


def load_state_dict(path: str, what: str = "weights") -> dict[str, torch.Tensor]:
    """A ``{name: tensor}`` state dict from ``path``; a ``{"state_dict": ...}`` wrapper is unwrapped."""
    import torch

    state = load_torch(path, what)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{what} {path} is not a state dict of tensors")
    return dict(state)


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save`` that never leaves a truncated file behind, locally or on a Beam filesystem.

    Locally: write beside, then rename. Elsewhere (object stores) an upload becomes visible only
    once complete, so one write through Beam's ``FileSystems.create`` is already all or nothing.
    """
    import torch

    path = str(path)
    if not is_url(path):
        target = _local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        torch.save(obj, tmp)
        os.replace(tmp, target)
        return
    from apache_beam.io.filesystems import FileSystems

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    try:
        with FileSystems.create(path) as fh:
            fh.write(buffer.getvalue())
    except Exception as exc:
        raise UserError(f"cannot write {path}: {_first_line(exc)}") from None


# -- torchvision ResNets -------------------------------------------------------------------------


def build_resnet(arch: str) -> ResNet:
    """A randomly initialised torchvision ``arch`` whose ``fc`` is the identity (it returns pooled features).

    ``fc`` is replaced after construction, so the random draws (and thus a seeded init) are those of
    ``torchvision.models.<arch>()``.
    """
    import torchvision
    from torch import nn

    if arch not in ARCHS:
        raise UserError(f"--arch must be one of {', '.join(ARCHS)}, not {arch!r}")
    model = getattr(torchvision.models, arch)(weights=None)
    model.fc = nn.Identity()
    return model


def detect_arch(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the torchvision ResNet whose keys these are, from the blocks per stage and block type."""
    blocks = []
    for layer in STAGES:
        indices = {int(k.split(".")[1]) for k in state_dict if k.startswith(layer + ".")}
        blocks.append(max(indices) + 1 if indices else 0)
    bottleneck = any(k.endswith("conv3.weight") for k in state_dict)
    arch = RESNET_LAYOUTS.get((tuple(blocks), bottleneck))
    if arch is None:
        raise UserError(f"state dict is not a torchvision ResNet (blocks per stage {blocks}, bottleneck={bottleneck})")
    return arch


def stage_channels(model: ResNet, layer: str) -> int:
    """Output width of stage ``layer`` (read from its last BatchNorm, so it works for any block type)."""
    last_block = getattr(model, layer)[-1]
    last_bn = last_block.bn3 if hasattr(last_block, "bn3") else last_block.bn2
    return last_bn.num_features


def forward_stages(model: ResNet, images: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
    """Feature maps ``(N, C, h, w)`` at the requested stages; stops after the deepest one needed."""
    wanted = set(layers)
    unknown = wanted - set(STAGES)
    if unknown:
        raise ValueError(f"unknown layers {sorted(unknown)}; choose from {STAGES}")
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    out: dict[str, torch.Tensor] = {}
    for name in STAGES:
        x = getattr(model, name)(x)
        if name in wanted:
            out[name] = x
            if len(out) == len(wanted):
                break
    return out


def write_backbone(model: ResNet, path: str | Path) -> None:
    """Write ``backbone.pt``: the ResNet's state dict without ``fc.*``, as float32 CPU tensors.

    That is exactly ``torchvision.models.<arch>().state_dict()`` minus the ImageNet head, so plain
    torchvision loads it (``model.fc = nn.Identity(); model.load_state_dict(torch.load(path))``).
    """
    state = {k: v.detach().cpu().float().clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    save_torch(state, path)


def read_backbone(path: str, arch: str | None = None, what: str = "checkpoint") -> tuple[ResNet, str]:
    """The ResNet (``fc`` = identity) in a ``backbone.pt`` or any torchvision ResNet state dict, and its arch.

    The architecture is detected from the keys; ``arch``, when given, must match, so nothing
    silently compares a resnet18 with a resnet50. ``fc.*`` may be present (and is ignored) or absent.
    """
    state = load_state_dict(path, what)
    detected = detect_arch(state)
    if arch is not None and arch != detected:
        raise UserError(f"{path} holds a {detected}, not the requested --arch {arch}")
    model = build_resnet(detected)
    result = model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys + result.unexpected_keys)[:3]
        raise UserError(f"{path} does not match torchvision {detected}: e.g. {', '.join(bad)}")
    return model, detected
