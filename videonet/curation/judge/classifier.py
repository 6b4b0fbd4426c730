"""The ImageNet frame classifier used by the keep rule: how to *run* any model of the ``models/`` registry.

``load_classifier`` loads a registry entry (ResNet-50 from torchvision, the paper's, or the offline
EfficientNet-lite0), prepares it for the device and engine, and wraps it in :class:`Classifier`, whose
``top1`` is the batched inference every entry shares, on host (numpy) frames or on frames already
on the classifier's device (torchcodec's NVDEC path). Two engines run it: ``torch`` (BatchNorm folded;
on CPU the oneDNN fusion of :mod:`~videonet.curation.judge.cpu_graph`) and, on CPU when installed,
``openvino`` (:mod:`~videonet.curation.judge.openvino_engine`), which measured faster. Failures are
one-line ``UserError``s.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from videonet.curation.judge.models import MODELS
from videonet.errors import UserError
from videonet.torch_utils import DEVICES, resolve_device

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENGINES = ("auto", "torch", "openvino")


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
    engine: str = "torch"  # torch: ``model`` is a torch module; openvino: uint8 NHWC frames -> numpy logits
    # Every forward pass is exactly ``max_batch`` frames, the last one zero-padded: a CUDA-graph model
    # (torch.compile mode="reduce-overhead") then captures one graph, not one per batch size.
    fixed_batch: bool = False

    def top1(self, frames: "np.ndarray | torch.Tensor") -> tuple[np.ndarray, np.ndarray]:  # noqa: F821
        """Top-1 label and softmax score per frame for a uint8 NHWC batch at classifier size: a numpy
        array, or a tensor on the host or on the classifier's device (left there)."""
        if len(frames) > self.max_batch:
            parts = [self._top1(frames[i:i + self.max_batch]) for i in range(0, len(frames), self.max_batch)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return self._top1(frames)

    def _top1(self, frames: "np.ndarray | torch.Tensor") -> tuple[np.ndarray, np.ndarray]:  # noqa: F821
        import torch

        count = len(frames)
        if self.fixed_batch and count < self.max_batch:
            frames = pad_batch(frames, self.max_batch)
        if self.engine == "openvino":
            frames = np.ascontiguousarray(frames.cpu().numpy()) if isinstance(frames, torch.Tensor) else frames
            logits = torch.from_numpy(self.model(frames))
        else:
            logits = self._torch_logits(frames)
        probs = logits[:count].softmax(dim=1)
        scores, labels = probs.max(dim=1)
        return labels.cpu().numpy(), scores.cpu().numpy()

    def _torch_logits(self, frames: "np.ndarray | torch.Tensor") -> "torch.Tensor":  # noqa: F821
        import torch

        if not isinstance(frames, torch.Tensor):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        batch = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        batch = ((batch - mean) / std).contiguous(memory_format=torch.channels_last)
        dtype = forward_dtype(self.precision)
        if self.baked:
            batch = batch.to(dtype)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=dtype,
                                                    enabled=self.precision != "fp32" and not self.baked):
            return self.model(batch).float()


@dataclass(frozen=True)
class ClassifierSettings:
    """Which ImageNet classifier judges the frames, and how it runs (picklable: weights load on each worker)."""

    classifier: str = field(default="resnet50", metadata={
        "help": "resnet50 (torchvision) or efficientnet-lite0 (offline weights).", "choices": tuple(MODELS)})
    weights: str | None = field(default=None, metadata={
        "help": "Torchvision enum name (IMAGENET1K_V2) or a weights file/URL."})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu or cuda.",
                                                  "choices": DEVICES})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16 on GPU and on CPUs with native bf16, else fp32), fp32, bf16 or fp16.",
        "choices": PRECISIONS})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the classifier instead of the CPU oneDNN fusion (pays off on long GPU runs); "
                "on CUDA: CUDA graphs, every forward padded to 256 frames."})
    engine: str = field(default="auto", metadata={
        "help": "auto (OpenVINO on CPU when installed: measured faster; torch elsewhere), torch or openvino.",
        "choices": ENGINES})

    def load(self) -> Classifier:
        return load_classifier(self.classifier, self.weights, self.device, self.precision, self.compile,
                               engine=self.engine)


def pad_batch(frames: "np.ndarray | torch.Tensor", size: int) -> "np.ndarray | torch.Tensor":  # noqa: F821
    """``frames`` followed by black frames up to ``size``, where they are (numpy, or a tensor on its device).
    In eval mode every frame's logits are its own, so the padding changes no label (tests/test_gpu_path.py)."""
    import torch

    missing = size - len(frames)
    if isinstance(frames, torch.Tensor):
        return torch.cat([frames, frames.new_zeros((missing, *frames.shape[1:]))])
    return np.concatenate([frames, np.zeros((missing, *frames.shape[1:]), frames.dtype)])


def forward_dtype(precision: str) -> "torch.dtype":  # noqa: F821
    """The torch dtype of a resolved precision (fp32, bf16 or fp16)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


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
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r}: expected auto, fp32, bf16 or fp16")
    return precision


def resolve_engine(engine: str, device: str, precision: str, compile: bool, fold: bool) -> str:
    """``auto``: OpenVINO where it runs and was measured faster (a CPU, fp32 or bf16, the fast path,
    the package installed; ``benchmarks/engines.py``), torch elsewhere. ``openvino`` where it cannot
    run is a one-line error rather than a silent fallback."""
    from videonet.curation.judge.openvino_engine import PRECISIONS, openvino_available

    if engine not in ENGINES:
        raise UserError(f"--engine {engine!r}: expected auto, torch or openvino")
    fits = device == "cpu" and precision in PRECISIONS and fold and not compile
    if engine == "auto":
        return "openvino" if fits and openvino_available() else "torch"
    if engine == "openvino" and not fits:
        raise UserError("--engine openvino runs on CPU only, at fp32 or bf16, without --compile")
    if engine == "openvino" and not openvino_available():
        raise UserError("--engine openvino needs `pip install 'videonet[openvino]'`")
    return engine


def load_classifier(name: str = "resnet50", weights: str | None = None, device: str = "auto",
                    precision: str = "auto", compile: bool = False, fold: bool = True,
                    engine: str = "auto") -> Classifier:
    """Build the frozen classifier on the chosen device, in eval mode and channels_last.

    ``fold`` is the fast path: BatchNorm folded into the convolutions and, on CPU, the weights cast
    once to the forward dtype and each convolution fused with the ReLU / residual add after it
    (:mod:`videonet.curation.judge.cpu_graph`); ``False`` keeps the plain torchvision module, the naive reference.
    ``compile`` wraps it in ``torch.compile`` instead: worth it for long runs on GPU, where the
    compile time (minutes on a small CPU) is amortised. On CUDA that is ``mode="reduce-overhead"``
    (CUDA graphs: one launch per forward instead of one per kernel), static shapes, and every forward
    padded to ``max_batch`` frames, so one graph is compiled and captured, whatever a round's size.
    ``engine`` (:func:`resolve_engine`) may hand the fast path to OpenVINO instead, which does its own
    folding and fusion.
    """
    import torch

    from videonet.curation.judge.cpu_graph import fold_batchnorm, fuse_onednn

    if name not in MODELS:
        raise UserError(f"--classifier {name!r}: expected one of {', '.join(MODELS)}")
    entry = importlib.import_module(MODELS[name])
    model, mean, std = entry.load_model(weights), entry.MEAN, entry.STD
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    # A GPU wants a whole round (clip batch x chunk = 200 frames by default) in one forward. On CPU
    # small batches are fastest per frame: the activations of 8 frames stay in cache, those of 48
    # do not (ResNet-50 bf16 here: 8 frames up to 1.75x faster per frame than 48, benchmarks/README.md).
    max_batch = 256 if device.startswith("cuda") else 8
    if resolve_engine(engine, device, precision, compile, fold) == "openvino":
        from videonet.curation.judge.openvino_engine import OpenVINOModel

        return Classifier(OpenVINOModel(model, mean, std, precision, torch.get_num_threads()), mean, std,
                          device, precision, max_batch, engine="openvino")
    if fold:
        model = fold_batchnorm(model)
    model = model.to(device).to(memory_format=torch.channels_last)
    # fp16 on CPU stays on autocast: the fused oneDNN path is built and tested for fp32 and bf16 only.
    baked = fold and not compile and device == "cpu" and precision in ("fp32", "bf16")
    graphs = compile and device.startswith("cuda")
    if graphs:
        model = torch.compile(model, mode="reduce-overhead", dynamic=False)
    elif compile:
        model = torch.compile(model)
    elif baked:
        dtype = forward_dtype(precision)
        model = fuse_onednn(model.to(dtype), dtype, max_batch)
    return Classifier(model, mean, std, device, precision, max_batch, baked, fixed_batch=graphs)

