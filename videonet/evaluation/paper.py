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
    DATA_ROOT/model-vs-human       datasets/, raw-data/                       -> eval model-vs-human

A missing folder is reported as "no data" (never as 0); a present but broken one stops the run
before any training with the reader's one-line error. ImageNet-A, ImageNet-Vid and model-vs-human
classify with the probe of ``eval linear`` (``--linear-head``); their folders without one are an
error too.
Each evaluation also writes its usual result JSON, so ``eval summary`` sees the same numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from videonet.errors import UserError
from videonet.evaluation.backbone import LoadedBackbone, load_backbone
from videonet.evaluation.finetune import Finetune, Ranks
from videonet.evaluation.results import EvalResult
from videonet.evaluation.settings import DetectSettings, PaperOptions, PaperTables, SegmentSettings

NO_DATA = "no data"


@dataclass(frozen=True)
class Cell:
    """One benchmark of the paper's tables: which evaluation (a DATA_ROOT folder) and metric, and its name in the paper."""

    title: str
    folder: str
    metric: str
    benchmark: str  # vito_published.csv's benchmark ...
    paper_metric: str  # ... and metric
    percent: bool = True  # shown x100 with one decimal, as the paper prints it (else a fraction, 3 decimals)

    def show(self, value: float | None, signed: bool = False) -> str:
        """A value in the paper's units (ours are fractions; published percentages are already x100)."""
        if value is None:
            return ""
        return format(value, ("+" if signed else "") + (".1f" if self.percent else ".3f"))


@dataclass(frozen=True)
class PaperTable:
    """A table of ``eval paper``: its benchmarks and the paper's tables whose ResNet-50 rows it shows."""

    title: str
    stem: str  # file name of its CSV
    cells: tuple[Cell, ...]
    sources: tuple[str, ...]


TABLES = (
    PaperTable("Table 1", "paper_table1", (
        Cell("ADE20K mIoU", "ade20k", "mIoU", "ADE20K", "mIoU"), Cell("COCO AP", "coco", "AP", "COCO", "mAP"),
        Cell("DAVIS J&F", "davis", "JF_mean", "DAVIS", "J&F mean"),
        Cell("UCF-101 top-1", "ucf101", "top1", "UCF101", "top-1"),
        Cell("IN-A top-1", "imagenet-a", "top1", "ImageNet-A", "top-1"),
        Cell("IN-Vid pm0", "imagenet-vid-robust", "pm0", "ImageNet-Vid-Robust", "pm0"),
        Cell("IN-Vid pm10", "imagenet-vid-robust", "pm10", "ImageNet-Vid-Robust", "pm10"),
    ), ("1",)),
    PaperTable("Scene understanding (Tables B.3, B.1)", "paper_scene", (
        Cell("PASCAL mIoU", "pascal", "mIoU", "PASCAL", "mIoU"), Cell("ADE20K mIoU", "ade20k", "mIoU", "ADE20K", "mIoU"),
        Cell("COCO AP", "coco", "AP", "COCO", "mAP"), Cell("LVIS AP", "lvis", "AP", "LVIS", "mAP"),
    ), ("B.3", "B.1")),
    PaperTable("DAVIS 2017 (Table B.4)", "paper_davis", (
        Cell("DAVIS J mean", "davis", "J_mean", "DAVIS 2017", "J mean"),
        Cell("DAVIS F mean", "davis", "F_mean", "DAVIS 2017", "F mean"),
    ), ("B.4",)),
    # The paper's "ceiled error consistency" is set beside error_consistency_over_human, which may not be
    # the same quantity (see videonet.evaluation.human).
    PaperTable("Human alignment, model-vs-human (Table 3)", "paper_human", (
        Cell("accuracy difference", "model-vs-human", "accuracy_difference", "model-vs-human shape-biased",
             "accuracy difference", percent=False),
        Cell("observed consistency", "model-vs-human", "observed_consistency", "model-vs-human shape-biased",
             "observed consistency", percent=False),
        Cell("EC / human EC (paper: ceiled EC)", "model-vs-human", "error_consistency_over_human",
             "model-vs-human shape-biased", "ceiled error consistency", percent=False),
    ), ("3",)),
)
PUBLISHED_CSV = "vito_published.csv"  # the paper's numbers, one a row (a copy of shared/paper/'s)
BACKBONE = "R50"  # videonet evaluates ResNets: the Swin-S rows (Table B.2) are not shown


@dataclass(frozen=True)
class Published:
    """One number of the paper, as printed (percent for accuracy, mIoU, AP and J/F)."""

    table: str
    method: str
    dataset: str
    backbone: str
    benchmark: str
    metric: str
    value: float

    @property
    def label(self) -> str:
        """Column name: the method and its pretraining data, e.g. ``MoCLR (ImageNet)``."""
        return self.method if self.dataset == "-" else f"{self.method} ({self.dataset})"


@lru_cache(maxsize=1)
def published() -> tuple[Published, ...]:
    """Every row of the packaged ``vito_published.csv``."""
    text = resources.files("videonet.evaluation").joinpath(PUBLISHED_CSV).read_text()
    rows = csv.DictReader(io.StringIO(text))
    return tuple(Published(r["table"], r["pretraining"], r["dataset"], r["backbone"], r["benchmark"], r["metric"],
                           float(r["value"])) for r in rows)


def published_columns(table: PaperTable) -> dict[str, dict[tuple[str, str], float]]:
    """Method label -> (benchmark, metric) -> value, for the ResNet-50 rows of the table's sources (first source wins)."""
    wanted = {(c.benchmark, c.paper_metric) for c in table.cells}
    columns: dict[str, dict[tuple[str, str], float]] = {}
    for source in table.sources:
        for row in published():
            key = (row.benchmark, row.metric)
            if row.table == source and row.backbone == BACKBONE and key in wanted:
                columns.setdefault(row.label, {}).setdefault(key, row.value)
    return columns


def paper_methods() -> list[str]:
    """Every method label that ``--paper-method`` accepts."""
    return list(dict.fromkeys(label for t in TABLES for label in published_columns(t)))


def _finetune(opts: PaperOptions, epochs: int, batch_size: int, lr: float, weight_decay: float) -> Finetune:
    return Finetune(epochs=opts.epochs or epochs, batch_size=opts.batch_size or batch_size, lr=lr,
                    weight_decay=weight_decay, max_steps=opts.max_steps, workers=opts.workers, seed=opts.seed)


def _segment(dataset: str) -> Callable[[Path, str, PaperOptions, Ranks], tuple[dict, dict]]:
    def run(root: Path, checkpoint: str, opts: PaperOptions, where: Ranks) -> tuple[dict, dict]:
        from videonet.evaluation import segment

        d, spec = SegmentSettings(), segment.SEG_DATASETS[dataset]
        config = _finetune(opts, spec.epochs, d.batch_size, d.lr, d.weight_decay)
        loaded = load_backbone(checkpoint, opts.arch, opts.seed)
        metrics, _, sizes = segment.evaluate(root, dataset, loaded.model, loaded.arch, config, opts.crop_size, where)
        return metrics, {**config.__dict__, "crop_size": opts.crop_size, **sizes}

    return run


def _detect(dataset: str) -> Callable[[Path, str, PaperOptions, Ranks], tuple[dict, dict]]:
    def run(root: Path, checkpoint: str, opts: PaperOptions, where: Ranks) -> tuple[dict, dict]:
        from videonet.evaluation import detect

        d = DetectSettings()
        config = _finetune(opts, d.epochs, d.batch_size, d.lr, d.weight_decay)
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


def _model_vs_human(root: Path, checkpoint: str, opts: PaperOptions, where: Ranks) -> tuple[dict, dict]:
    from videonet.evaluation import human
    from videonet.evaluation.linear import LinearHead

    loaded = load_backbone(checkpoint, opts.arch, opts.seed)
    head = LinearHead.load(opts.linear_head, loaded.feature_dim)
    metrics = human.model_vs_human(root, loaded.model, head, where.device, workers=opts.workers)
    return metrics, {"head": str(opts.linear_head), "datasets": list(human.SHAPE_BIAS_DATASETS)}


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
    "model-vs-human": ("model-vs-human", _model_vs_human, False),
}


def check_layouts(data_root: Path, linear_head: Path | None = None) -> list[str]:
    """The folders present under ``data_root``, each checked by its reader (a broken one is a UserError now)."""
    from videonet.evaluation import davis, detect, human, robustness, segment, ucf101

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
        elif name == "model-vs-human":
            for dataset in human.SHAPE_BIAS_DATASETS:
                human.read_human_trials(root, dataset)
                human.list_images(root, dataset)
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


def _ours(results: list[EvalResult]) -> dict[tuple[str, str], float]:
    """(folder, metric) -> our value, as a fraction."""
    return {(r.dataset, m): v for r in results for m, v in r.metrics.items()}


def tables(label: str, results: list[EvalResult],
           paper_method: str = PaperTables.paper_method) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Header and rows of each table: one row per benchmark; ours, the paper's ``paper_method``, the
    difference (ours minus the paper, in points) and every other published ResNet-50 row."""
    if paper_method not in paper_methods():
        raise UserError(f"--paper-method {paper_method!r} is not in the paper's tables; choose from "
                        f"{', '.join(paper_methods())}")
    ours = _ours(results)
    out = {}
    for table in TABLES:
        columns = published_columns(table)
        reference = columns.get(paper_method, {})
        others = [m for m in columns if m != paper_method]
        header = ["benchmark", label, f"{paper_method} (paper)", "difference to the paper", *others]
        rows = []
        for cell in table.cells:
            key = (cell.benchmark, cell.paper_metric)
            mine, theirs = ours.get((cell.folder, cell.metric)), reference.get(key)
            if mine is not None and cell.percent:
                mine *= 100
            diff = cell.show(mine - theirs, signed=True) if mine is not None and theirs is not None else ""
            rows.append([cell.title, NO_DATA if mine is None else cell.show(mine), cell.show(theirs), diff,
                         *(cell.show(columns[m].get(key)) for m in others)])
        out[table.title] = (header, rows)
    return out


def write_tables(label: str, results: list[EvalResult], out_dir: Path,
                 paper_method: str = PaperTables.paper_method) -> list[Path]:
    """``paper.md`` (every table) and one CSV per table (``paper_table1.csv``, ...); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines, paths = [], []
    for table, (header, rows) in zip(TABLES, tables(label, results, paper_method).values()):
        lines += [f"## {table.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        path = out_dir / f"{table.stem}.csv"
        with path.open("w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
        paths.append(path)
    lines.append("Percent (Table 3: fractions). 'no data': no DATA_ROOT folder for it; difference: ours minus the paper; "
                 "an empty paper cell: not in that table of the paper (ResNet-50 rows of its Tables "
                 f"{', '.join(s for t in TABLES for s in t.sources)}).")
    md = out_dir / "paper.md"
    md.write_text("\n".join(lines) + "\n")
    return [md, *paths]
