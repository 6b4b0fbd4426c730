"""The settings of every evaluation, each default written once.

``videonet eval``'s options are generated from these dataclasses (:mod:`videonet.options`), and the
evaluation modules take the same dataclasses, so a default changed here changes the command line,
its ``--help`` and the code together. Sections shared by several commands (the checkpoint, where
results go, the frozen-feature extraction) are one dataclass each. This module imports neither
torch nor typer: ``videonet eval --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videonet.torch_utils import ARCHS, DEVICES


def setting(default: Any, help: str, **meta: Any) -> Any:
    """A settings field: its default and the metadata :mod:`videonet.options` reads (help, min, choices, cli)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class Backbone:
    """Which network is evaluated and how it is labelled."""

    arch: str | None = setting(None, "Architecture for 'random' (default resnet50); checked against the checkpoint "
                               "otherwise.", choices=ARCHS)
    name: str | None = setting(None, "Label of this checkpoint in the summary table (default: run dir, file stem or "
                               "spec).")
    seed: int = setting(0, "Seed for random init, data order and augmentation.")


@dataclass(frozen=True)
class Output:
    """Where results go and where the work runs."""

    results_dir: Path = setting(Path("runs/eval"), "Folder that receives the JSON result (read by `videonet eval "
                                "summary`).")
    device: str = setting("auto", "'auto' (GPU if available), 'cpu', 'cuda' or 'cuda:N'.", choices=DEVICES)


@dataclass(frozen=True)
class Workers:
    """Data loading."""

    workers: int = setting(4, "DataLoader worker processes.", min=0)


@dataclass(frozen=True)
class Features:
    """Frozen pooled ``layer4`` features of centre crops (kNN, linear probe and everything classified by it)."""

    crop_size: int = setting(224, "Centre crop after resizing the short side to crop*256/224 (as the probe was "
                             "trained).", min=1)
    batch_size: int = setting(64, "Batch size of feature extraction.", min=1)


@dataclass(frozen=True)
class Knn:
    """DINO's weighted kNN."""

    k: int = setting(20, "Neighbours that vote.", min=1)
    temperature: float = setting(0.07, "Vote weight exp(cosine / T), as in DINO.")


@dataclass(frozen=True)
class LinearProbe:
    """The linear probe's SGD and learning-rate sweep."""

    lrs: tuple[float, ...] = setting((0.01, 0.03, 0.1, 0.3, 1.0), "Comma-separated learning rates to sweep.")
    epochs: int = setting(100, "Epochs over the cached features per fit.", min=1)
    probe_batch_size: int = setting(256, "Batch size of the linear classifier's SGD.", min=1)
    holdout: float = setting(0.2, "Fraction of train/ held out to choose the learning rate.")
    save_head: Path | None = setting(None, "Where the trained probe goes (default RESULTS_DIR/linear-heads/<name>.pt); "
                                     "the robustness and model-vs-human evals read it with --head.")


@dataclass(frozen=True)
class PropagationConfig:
    """Hyper-parameters of DAVIS label propagation: VFS's ResNet-50 DAVIS test configuration by default.

    Sources: ``test_cfg`` of xvjiarui/VFS ``configs/r50_nc_sgd_cos_100e_r5_1xNx2_k400.py``
    (``precede_frames=20, topk=10, temperature=0.07, neighbor_range=36, with_first=True,
    with_first_neighbor=True``) and its tracker (``vanilla_tracker.py``: the spatial mask is
    ``spatial_neighbor(..., mode='circle')``, i.e. distance < neighbor_range // 2 = 18 cells, applied
    to the first frame too; the first mask is downsampled by ``pil_nearest_interpolate``). CRW and
    VFS's ResNet-18 use radius 12 (neighbor_range 24) and CRW temperature 0.05: pass those for R18.
    """

    n_context: int = setting(20, "Previous frames used as keys (besides the first); VFS precede_frames.", min=0)
    topk: int = setting(10, "Neighbours each position takes labels from (VFS topk).", min=1)
    radius: float = setting(18.0, "Spatial radius in feature cells (stride 8); VFS R50: 36 // 2 (CRW/R18: 12).")
    temperature: float = setting(0.07, "Softmax temperature on affinities; VFS R50: 0.07 (CRW: 0.05).")
    query_chunk: int = setting(256, "Query positions per affinity block (bounds memory only).", cli=False)


@dataclass(frozen=True)
class DavisRun:
    """Which DAVIS sequences are propagated, where the masks go and how void pixels are scored."""

    split: str = setting("val", "ImageSets/2017/<split>.txt.")
    sequences: str | None = setting(None, "Comma-separated subset of the split's sequences.")
    masks_dir: Path | None = setting(None, "Where to write the propagated palette PNGs (default "
                                     "RESULTS_DIR/davis-masks/<name>).")
    void: str = setting("background", "Ground-truth void (255) pixels: 'background' (the official semi-supervised "
                        "scoring) or 'ignore'.", choices=("background", "ignore"))


@dataclass(frozen=True)
class ClipConfig:
    """How UCF-101 clips are cut from videos and what size their frames are."""

    fps: float = setting(12.0, "Clip frame rate.")
    seconds: float = setting(2.0, "Clip length.")
    resize: int = setting(256, "Short side of decoded frames.", min=1)
    crop_size: int = setting(224, "Square crop fed to the backbone.", min=1)
    test_clips: int = setting(10, "Clips per test video, probabilities averaged.", min=1)

    @property
    def frames(self) -> int:
        """Frames per clip (24 for 2 s at 12 fps)."""
        return max(1, round(self.fps * self.seconds))


@dataclass(frozen=True)
class Schedule:
    """One UCF-101 fine-tuning schedule's own defaults."""

    epochs: int
    lr: float
    weight_decay: float


UCF_SCHEDULES = {"paper": Schedule(16, 1e-4, 0.0), "sgd-cosine": Schedule(8, 0.01, 1e-4)}


@dataclass(frozen=True)
class UcfSchedule:
    """The UCF-101 fine-tuning: the paper's Adam with step drops, or the earlier SGD with a cosine."""

    schedule: str = setting("paper", "paper (Adam, lr x0.1 after epochs 6, 10, 14) | sgd-cosine (earlier).",
                            choices=tuple(UCF_SCHEDULES))
    epochs: int | None = setting(None, "Default: paper 16, sgd-cosine 8.", min=1)
    lr: float | None = setting(None, "Default: paper 1e-4, sgd-cosine 0.01.")
    weight_decay: float | None = setting(None, "Default: paper 0, sgd-cosine 1e-4.")
    batch_size: int = setting(8, "Clips per step.", min=1)


POOLINGS = ("avg", "multiscale", "temporal-attention", "multiscale-concat", "temporal-attention-linear")


@dataclass(frozen=True)
class UcfRun:
    """Which UCF-101 split and which clip head."""

    split: int = setting(1, "Official split 1, 2 or 3.", choices=(1, 2, 3))
    pooling: str = setting("multiscale", "multiscale | temporal-attention (the paper's heads) | avg | multiscale-concat "
                           "| temporal-attention-linear (earlier variants).", choices=POOLINGS)


METHODS = ("attention", "gradient")


@dataclass(frozen=True)
class Explainer:
    """Where a checkpoint's importance maps come from."""

    method: str = setting("attention", "attention (VITO's attention pooling, needs attention.pt) | gradient "
                          "(|d score / d pixel|, max over colour; any ResNet).", choices=METHODS)
    attention: Path | None = setting(None, "attention.pt (default: CHECKPOINT/attention.pt for a run dir).")


@dataclass(frozen=True)
class AttentionGrid:
    """The PNG grid of ``eval attention``."""

    out: Path = setting(Path("runs/eval/attention.png"), "PNG grid to write.")
    size: int = setting(224, "Images are resized (short side) and centre-cropped to this size.", min=1)
    columns: int = setting(4, "Grid columns.", min=1)


SHAPE_BIAS_DATASETS = ("edge", "cue-conflict", "low-pass", "uniform-noise")  # model-vs-human's, as in the paper


@dataclass(frozen=True)
class Smoke:
    """Shortened fine-tunings."""

    steps: int | None = setting(None, "Stop after this many steps (smoke runs); the learning-rate schedule spans "
                                "them.", min=1)


@dataclass(frozen=True)
class SegmentSettings:
    """FCN fine-tuning on PASCAL / ADE20K (the paper's appendix)."""

    epochs: int | None = setting(None, "Default: the paper's 45 on PASCAL train_aug, 60 on ADE20K train.", min=1)
    batch_size: int = setting(16, "Global batch, split over torchrun processes.", min=1)
    lr: float = setting(0.04, "Peak learning rate, polynomial decay (power 0.9) per step.")
    weight_decay: float = setting(0.005, "SGD weight decay.")
    crop_size: int = setting(512, "Training crops and test windows (the base scale's short side).", min=1)


@dataclass(frozen=True)
class DetectSettings:
    """FCOS fine-tuning on COCO / LVIS (torchvision's reference schedule)."""

    epochs: int = setting(26, "torchvision's FCOS reference schedule; lr x0.1 at 16/26 and 22/26 of the run.", min=1)
    batch_size: int = setting(16, "Global batch, split over torchrun processes.", min=1)
    lr: float = setting(0.01, "Peak learning rate after a 1000-step linear warmup.")
    weight_decay: float = setting(1e-4, "SGD weight decay.")
    min_size: int = setting(800, "Short side images are resized to.", min=1)
    max_size: int = setting(1333, "Cap on the long side.", min=1)


@dataclass(frozen=True)
class PaperOptions:
    """``eval paper``: each protocol's defaults, with the few overrides every fine-tuning shares."""

    epochs: int | None = setting(None, "Override every fine-tuning's epochs (default: each protocol's).", min=1)
    batch_size: int | None = setting(None, "Override the segmentation/detection global batch (default: each "
                                     "protocol's).", min=1)
    crop_size: int = setting(SegmentSettings.crop_size, "Segmentation crops.", min=1)
    min_size: int = setting(DetectSettings.min_size, "Detection short side.", min=1)
    max_size: int = setting(DetectSettings.max_size, "Detection long-side cap.", min=1)
    linear_head: Path | None = setting(None, "Probe of `eval linear` (needed by imagenet-a/, imagenet-vid-robust/ "
                                       "and model-vs-human/).")
    # From the shared sections (--arch, --seed, --workers, --steps):
    arch: str | None = setting(None, "", cli=False)
    seed: int = setting(Backbone.seed, "", cli=False)
    workers: int = setting(Workers.workers, "", cli=False)
    max_steps: int | None = setting(None, "", cli=False)


@dataclass(frozen=True)
class PaperTables:
    """How ``eval paper`` lays its tables out."""

    out: Path | None = setting(None, "Where paper.md and paper_*.csv go (default RESULTS_DIR).")
    paper_method: str = setting("VITO (VideoNet)", "The published row the difference column compares with, e.g. "
                                "'Supervised (ImageNet)' when evaluating that baseline.")
