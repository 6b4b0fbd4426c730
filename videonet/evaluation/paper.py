"""``videonet eval paper``: every evaluation whose data is present, laid out as the VITO paper's tables.

``DATA_ROOT`` holds one folder per benchmark, each in the layout its own command reads::

    DATA_ROOT/pascal   VOCdevkit (or VOC2012) with SegmentationClassAug      -> eval segment --dataset pascal
    DATA_ROOT/ade20k   ADEChallengeData2016 (or its parent)                   -> eval segment --dataset ade20k
    DATA_ROOT/coco     annotations/instances_*2017.json, train2017/, val2017/ -> eval detect --dataset coco
    DATA_ROOT/lvis     lvis_v1_{train,val}.json (images: lvis/ or coco/)      -> eval detect --dataset lvis
    DATA_ROOT/davis    DAVIS-2017 (JPEGImages/480p, Annotations/480p, ...)    -> eval davis
    DATA_ROOT/ucf101   UCF-101/ and ucfTrainTestlist/                         -> eval ucf101 (paper head and schedule)
    DATA_ROOT/imagenet-a           <wnid>/*.jpg                               -> eval imagenet-a
    DATA_ROOT/imagenet-vid-robust  val/, metadata/, misc/                     -> eval imagenet-vid

A missing folder is reported as "no data" (never as 0); a present but broken one stops the run
before any training with the reader's one-line error. ImageNet-A and ImageNet-Vid classify with
the probe of ``eval linear`` (``--linear-head``); their folders without one are an error too.
Each evaluation also writes its usual result JSON, so ``eval summary`` sees the same numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from videonet.errors import UserError
from videonet.evaluation.backbone import LoadedBackbone, load_backbone
from videonet.evaluation.finetune import Finetune, Ranks
from videonet.evaluation.results import EvalResult

NO_DATA = "no data"


@dataclass(frozen=True)
class PaperOptions:
    """Protocol settings shared by the evaluations; the ``None`` ones keep each protocol's own default."""

    arch: str | None = None
    seed: int = 0
    workers: int = 4
    max_steps: int | None = None  # cap every fine-tuning (smoke runs)
    epochs: int | None = None
    batch_size: int | None = None
    crop_size: int = 512  # segmentation crops
    min_size: int = 800  # detection resize
    max_size: int = 1333
    linear_head: Path | None = None  # probe of `eval linear`, for ImageNet-A and ImageNet-Vid-Robust


@dataclass(frozen=True)
class Cell:
    """One column of the paper's tables: which evaluation (a DATA_ROOT folder) and which of its metrics."""

    title: str
    folder: str
    metric: str


TABLE1 = (
    Cell("ADE20K mIoU", "ade20k", "mIoU"), Cell("COCO AP", "coco", "AP"), Cell("DAVIS J&F", "davis", "JF_mean"),
    Cell("UCF-101 top-1", "ucf101", "top1"), Cell("IN-A top-1", "imagenet-a", "top1"),
    Cell("IN-Vid pm0", "imagenet-vid-robust", "pm0"), Cell("IN-Vid pm10", "imagenet-vid-robust", "pm10"),
)
SCENE = (Cell("PASCAL mIoU", "pascal", "mIoU"), Cell("ADE20K mIoU", "ade20k", "mIoU"), Cell("COCO AP", "coco", "AP"),
         Cell("LVIS AP", "lvis", "AP"))

# The paper's VITO (ResNet-50) numbers, in percent, by column title. Only numbers checked against
# the paper belong here; none could be checked from the stored copies available when this was
# written (the table pages were not retrievable), so every published cell is empty for now.
PUBLISHED: dict[str, float] = {}


def _finetune(opts: PaperOptions, epochs: int, batch_size: int, lr: float, weight_decay: float) -> Finetune:
    return Finetune(epochs=opts.epochs or epochs, batch_size=opts.batch_size or batch_size, lr=lr,
                    weight_decay=weight_decay, max_steps=opts.max_steps, workers=opts.workers, seed=opts.seed)


def _segment(dataset: str) -> Callable[[Path, str, PaperOptions, Ranks], tuple[dict, dict]]:
    def run(root: Path, checkpoint: str, opts: PaperOptions, where: Ranks) -> tuple[dict, dict]:
        from videonet.evaluation import segment

        d, spec = segment.SEG_DEFAULTS, segment.SEG_DATASETS[dataset]
        config = _finetune(opts, spec.epochs, d["batch_size"], d["lr"], d["weight_decay"])
        loaded = load_backbone(checkpoint, opts.arch, opts.seed)
        metrics, _, sizes = segment.evaluate(root, dataset, loaded.model, loaded.arch, config, opts.crop_size, where)
        return metrics, {**config.__dict__, "crop_size": opts.crop_size, **sizes}

    return run


def _detect(dataset: str) -> Callable[[Path, str, PaperOptions, Ranks], tuple[dict, dict]]:
    def run(root: Path, checkpoint: str, opts: PaperOptions, where: Ranks) -> tuple[dict, dict]:
        from videonet.evaluation import detect

        d = detect.DET_DEFAULTS
        config = _finetune(opts, d["epochs"], d["batch_size"], d["lr"], d["weight_decay"])
        images = root if dataset == "coco" or (root / "val2017").is_dir() else root.parent / "coco"
        loaded = load_backbone(checkpoint, opts.arch, opts.seed)
        metrics, _, sizes = detect.evaluate(root, dataset, loaded.model, loaded.arch, config, where,
                                            opts.min_size, opts.max_size, images)
        return metrics, {**config.__dict__, "min_size": opts.min_size, "max_size": opts.max_size, **sizes}

    return run


def _davis(root: Path, checkpoint: str, opts: PaperOptions, where: Ranks) -> tuple[dict, dict]:
    from videonet.evaluation import davis

    loaded = load_backbone(checkpoint, opts.arch, opts.seed)
    metrics, scores = davis.evaluate(root, davis.backbone_feature_fn(loaded.model, where.device), None)
    return metrics, {"objects": len(scores), **davis.PropagationConfig().__dict__}


def _ucf101(root: Path, checkpoint: str, opts: PaperOptions, where: Ranks) -> tuple[dict, dict]:
    from videonet.evaluation import ucf101

    train = ucf101.TrainConfig.for_schedule("paper", epochs=opts.epochs, workers=opts.workers, seed=opts.seed)
    loaded = load_backbone(checkpoint, opts.arch, opts.seed)
    metrics, n_test = ucf101.evaluate(root, loaded.model, "multiscale", where.device, 1, ucf101.ClipConfig(), train)
    return metrics, {"pooling": "multiscale", "test_videos": n_test, **train.__dict__}


def _robustness(kind: str) -> Callable[[Path, str, PaperOptions, Ranks], tuple[dict, dict]]:
    def run(root: Path, checkpoint: str, opts: PaperOptions, where: Ranks) -> tuple[dict, dict]:
        from videonet.evaluation import robustness
        from videonet.evaluation.linear import LinearHead

        loaded = load_backbone(checkpoint, opts.arch, opts.seed)
        head = LinearHead.load(opts.linear_head, loaded.feature_dim)
        test = robustness.imagenet_a if kind == "imagenet-a" else robustness.imagenet_vid_robust
        return test(root, loaded.model, head, where.device, workers=opts.workers), {"head": str(opts.linear_head)}

    return run


# Folder -> (eval name in the result files, runner, whether every rank takes part). Distributed
# fine-tunings come first; DAVIS and UCF-101 are single-process and run on rank 0 after them.
EVALS: dict[str, tuple[str, Callable[[Path, str, PaperOptions, Ranks], tuple[dict, dict]], bool]] = {
    "pascal": ("segment-pascal", _segment("pascal"), True),
    "ade20k": ("segment-ade20k", _segment("ade20k"), True),
    "coco": ("detect-coco", _detect("coco"), True),
    "lvis": ("detect-lvis", _detect("lvis"), True),
    "davis": ("davis", _davis, False),
    "ucf101": ("ucf101-multiscale", _ucf101, False),
    "imagenet-a": ("imagenet-a", _robustness("imagenet-a"), False),
    "imagenet-vid-robust": ("imagenet-vid", _robustness("imagenet-vid"), False),
}


def check_layouts(data_root: Path, linear_head: Path | None = None) -> list[str]:
    """The folders present under ``data_root``, each checked by its reader (a broken one is a UserError now)."""
    from videonet.evaluation import davis, detect, robustness, segment, ucf101

    if not data_root.is_dir():
        raise UserError(f"--data-root {data_root} does not exist")
    present = [name for name in EVALS if (data_root / name).is_dir()]
    for name in present:
        root = data_root / name
        if name in segment.SEG_DATASETS:
            for split in ("train", "val"):
                segment.list_pairs(root, name, split)
        elif name in detect.DET_DATASETS:
            detect.annotation_files(root, name)
        elif name == "davis":
            davis.list_sequences(root)
        elif name == "ucf101":
            ucf101.read_split(root)
        elif linear_head is None or not linear_head.is_file():
            raise UserError(f"{root} needs the probe of `videonet eval linear`: pass --linear-head (got {linear_head})")
        elif name == "imagenet-a":
            robustness.check_imagenet_a(root)
        else:
            robustness.read_vid_robust(root)
    return present


def run_paper(loaded: LoadedBackbone, data_root: Path, label: str, opts: PaperOptions, where: Ranks) -> list[EvalResult]:
    """Run every evaluation whose folder is present; returns their results (on rank 0; others get []).

    ``loaded`` names the checkpoint (its ``source``); each evaluation loads a fresh copy, since
    fine-tuning and DAVIS's stride removal change the network they are given.
    """
    results = []
    for name in check_layouts(data_root, opts.linear_head):
        eval_name, runner, distributed = EVALS[name]
        if not distributed and not where.main:
            continue
        metrics, config = runner(data_root / name, loaded.source, opts, where)
        if where.main and metrics:
            results.append(EvalResult(eval_name, label, loaded.source, loaded.arch, name, metrics, config))
    return results


def _cells(cells: tuple[Cell, ...], results: list[EvalResult]) -> list[str]:
    by_folder = {r.dataset: r for r in results}
    row = []
    for cell in cells:
        if cell.folder not in by_folder or cell.metric not in by_folder[cell.folder].metrics:
            row.append(NO_DATA)
        else:
            row.append(f"{100 * by_folder[cell.folder].metrics[cell.metric]:.1f}")
    return row


def tables(label: str, results: list[EvalResult]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Header and rows of Table 1 and of the scene-understanding table: this checkpoint, then the paper's VITO."""
    out = {}
    for title, cells in (("Table 1", TABLE1), ("Scene understanding", SCENE)):
        header = ["model", *(c.title for c in cells)]
        published = [f"{PUBLISHED[c.title]:.1f}" if c.title in PUBLISHED else "" for c in cells]
        out[title] = (header, [[label, *_cells(cells, results)], ["VITO (paper)", *published]])
    return out


def write_tables(label: str, results: list[EvalResult], out_dir: Path) -> list[Path]:
    """``paper.md`` (both tables) and ``paper_table1.csv`` / ``paper_scene.csv``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines, paths = [], []
    for (title, (header, rows)), stem in zip(tables(label, results).items(), ("paper_table1", "paper_scene")):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        path = out_dir / f"{stem}.csv"
        with path.open("w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
        paths.append(path)
    lines.append("Percent. 'no data': no DATA_ROOT folder for it; empty paper cells: not verified against the paper.")
    md = out_dir / "paper.md"
    md.write_text("\n".join(lines) + "\n")
    return [md, *paths]
