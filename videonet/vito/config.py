"""The settings of a VITO run: one dataclass whose fields are ``videonet train``'s options.

Each default and help text is written once, here: :mod:`videonet.vito.cli` generates the command's
options from the fields (:mod:`videonet.options`), the trainer reads the same object, and a run
saves it as ``config.json`` and in every checkpoint. Importing this module loads no torch, so
``videonet train --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from videonet.curation.judge.decoders import DECODERS
from videonet.options import check_fields
from videonet.torch_utils import ARCHS
from videonet.vito.sampling import SAMPLERS, WINDOW_S

if TYPE_CHECKING:
    from videonet.vito.model import Online

NEGATIVES = ("moclr", "mocov3")
"""The contrastive loss's negatives (:func:`videonet.vito.loss.info_nce`)."""
MODEL_FIELDS = ("arch", "pooling", "scales", "proj_hidden", "proj_dim")
"""The fields that shape the network: a run resumes only into the same ones."""


def _opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``config.json`` and inside every checkpoint."""

    data: str  # the shards and the run dir: the command declares them itself (their help differs with --export)
    out: str
    steps: int = _opt(100_000, "Total optimisation steps (the schedules span them).", min=1)
    batch_size: int = _opt(256, "Global batch of clips (split across torchrun processes).", min=2)
    views: int = _opt(3, "Views per clip (VITO: 3).", min=2)
    sampler: str = _opt("marginal", "Frame times per view: marginal (VITO) | fixed | chunked | single.",
                        choices=tuple(SAMPLERS))
    window: float = _opt(WINDOW_S, "Temporal window in seconds for the video samplers.", min=0)
    image_size: int = _opt(224, "Crop size (e.g. 64 for CPU smoke runs).", min=32)
    min_scale: float | None = _opt(None, "Min crop scale (default 0.4 for video, 0.08 for single).")
    arch: str = _opt("resnet50", "Backbone: resnet50 | resnet18 (small runs) | any torchvision ResNet.", choices=ARCHS)
    pooling: str = _opt("attn", "attn (multi-scale attention pooling) | avg.", choices=("attn", "avg"))
    scales: int = _opt(2, "2: blocks 3 and 4; 1: block 4 only.", choices=(1, 2))
    proj_hidden: int = _opt(4096, "Projector/predictor hidden width.", min=1)
    proj_dim: int = _opt(256, "Projection dim.", min=1)
    tau: float = _opt(0.1, "InfoNCE temperature.")
    negatives: str = _opt("moclr", "moclr (the paper: both views' targets of the other clips, 2B-1 candidates) | "
                                   "mocov3 (the other view's targets only, B candidates).", choices=NEGATIVES)
    base_lr: float = _opt(0.3, "LARS lr per 256 clips (peak lr = base_lr x global batch / 256).")
    weight_decay: float = _opt(1e-6, "Weight decay (not on biases and BatchNorm).", min=0)
    warmup: float = _opt(0.03, "Fraction of steps of linear lr warm-up from 0 before the cosine decay.", min=0)
    ema_base: float = _opt(0.996, "Initial EMA rate of the target (cosine to 1).")
    lars_eta: float = _opt(1e-3, "LARS trust coefficient.")
    seed: int = _opt(0, "Seed of the initialisation and of the whole data stream.")
    workers: int | None = _opt(None, "Data loader processes per GPU/process (default cores - 1, max 8).", min=0)
    shuffle_buffer: int = _opt(256, "Clips in each worker's shuffle buffer.", min=1)
    device: str = _opt("auto", "auto | cpu | cuda (bf16 autocast on cuda).", choices=("auto", "cpu", "cuda"))
    decoder: str = _opt("auto", "auto (torchcodec, NVDEC, on the training GPU when it is CUDA and torchcodec is "
                                "installed, else PyAV in the loader workers) | pyav | torchcodec.", choices=DECODERS)
    log_every: int = _opt(10, "Log every N steps (stdout, metrics.csv, TensorBoard).", min=1)
    save_every: int = _opt(1000, "Checkpoint every N steps (and at the end).", min=1)
    stop_at: int | None = _opt(None, "Stop (and checkpoint) after this step, e.g. to fit a job limit.", min=1)

    @property
    def peak_lr(self) -> float:
        """The linear scaling rule: base lr x global batch / 256."""
        return self.base_lr * self.batch_size / 256

    @property
    def warmup_steps(self) -> int:
        """Linear warm-up length in steps (BYOL's: from lr 0 at step 0)."""
        return round(self.warmup * self.steps)

    def validate(self) -> None:
        """One-line UserErrors for settings that cannot work (the command line checks them when parsed;
        this is for configs built in code), before anything heavy starts."""
        check_fields(self)

    def build_online(self) -> Online:
        """A freshly initialised online branch of this shape (the target is a deep copy of its ``net``)."""
        from videonet.vito.model import Online, VitoNet

        net = VitoNet(self.arch, self.pooling, self.scales, self.proj_hidden, self.proj_dim)
        return Online(net, self.proj_hidden, self.proj_dim)
