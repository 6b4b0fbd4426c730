"""``videonet eval``: every evaluation of a checkpoint, each writing a JSON result that ``summary`` tabulates.

The options are generated from the settings dataclasses of :mod:`videonet.evaluation.settings`
(one home per default; :mod:`videonet.options` builds them). Heavy imports (torch, torchvision,
PyAV, matplotlib) happen inside the commands so that ``videonet eval --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from videonet.errors import UserError
from videonet.evaluation import settings as S
from videonet.options import from_flat, settings_options

app = typer.Typer(
    help="Evaluate checkpoints (ours or torchvision baselines): kNN, linear, DAVIS, UCF-101, attention, ClickMe, "
    "robustness, model-vs-human, segment, detect, the paper's tables, summary.",
    no_args_is_help=True,
)

CHECKPOINT = typer.Argument(
    ...,
    help="backbone.pt (or any torchvision ResNet state dict), a `videonet train` run dir (local, http(s), gs://, "
    "s3://, ...), 'random', or a torchvision weights name such as ResNet50_Weights.IMAGENET1K_V2.",
)
IMAGE_FOLDER = typer.Argument(..., help="ImageFolder dataset: DATA_DIR/train/<class>/*.jpg and DATA_DIR/val/<class>/*.jpg.")
HEAD = typer.Option(..., help="The probe saved by `videonet eval linear` (RESULTS_DIR/linear-heads/<name>.pt), trained on "
                    "ImageNet's wnid folders.")

# The sections each kind of command takes (panel name, settings dataclass).
COMMON = (("checkpoint", S.Backbone), ("output", S.Output))
FROZEN = (*COMMON, ("features", S.Features), ("workers", S.Workers))
FINETUNE = (*COMMON, ("workers", S.Workers), ("smoke", S.Smoke))


def _sections(flat: dict, *classes: type) -> list:
    """The settings dataclasses built from the parsed options, in the order asked."""
    return [from_flat(cls, flat) for cls in classes]


def _load(checkpoint: str, backbone: S.Backbone):
    from videonet.evaluation.backbone import load_backbone

    loaded = load_backbone(checkpoint, arch=backbone.arch, seed=backbone.seed)
    return loaded, backbone.name or loaded.name


def _save(eval_name: str, loaded, label: str, dataset: Path, metrics: dict, config: dict, results_dir: Path) -> None:
    """Record the result and print the metrics on one line."""
    from videonet.evaluation.results import EvalResult, save_result

    result = EvalResult(eval_name, label, loaded.source, loaded.arch, dataset.resolve().name, metrics, config)
    path = save_result(result, results_dir)
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
    typer.echo(f"{eval_name} {label} on {dataset}: {shown}  -> {path}")


def _head(path: Path, loaded):
    """The ``eval linear`` probe at ``path``, checked against the backbone's feature width."""
    from videonet.evaluation.linear import LinearHead

    return LinearHead.load(path, loaded.feature_dim)


def _frozen_features(checkpoint: str, data_dir: Path, backbone: S.Backbone, output: S.Output, features: S.Features,
                     workers: S.Workers):
    """The backbone and its train/val features, checking the dataset layout before loading any weights."""
    from videonet.evaluation.features import extract_features, image_folder_splits
    from videonet.torch_utils import torch_device

    train_set, val_set = image_folder_splits(data_dir, features.crop_size)
    loaded, label = _load(checkpoint, backbone)
    dev = torch_device(output.device)
    train = extract_features(loaded.model, train_set, dev, features.batch_size, workers.workers, desc="train features")
    val = extract_features(loaded.model, val_set, dev, features.batch_size, workers.workers, desc="val features")
    return loaded, label, train, val


@app.command("knn")
@settings_options((*FROZEN, ("knn", S.Knn)))
def knn_cmd(checkpoint: str = CHECKPOINT, data_dir: Path = IMAGE_FOLDER, **settings) -> None:
    """Weighted kNN top-1 on frozen global features (cosine similarity, votes weighted as in DINO)."""
    from videonet.evaluation.knn import knn_accuracy

    backbone, output, features, workers, knn = _sections(settings, S.Backbone, S.Output, S.Features, S.Workers, S.Knn)
    loaded, label, train, val = _frozen_features(checkpoint, data_dir, backbone, output, features, workers)
    acc = knn_accuracy(train.features, train.labels, val.features, val.labels, len(train.classes), knn.k, knn.temperature)
    config = {"k": knn.k, "temperature": knn.temperature, "crop_size": features.crop_size, "train": len(train.labels),
              "val": len(val.labels)}
    _save("knn", loaded, label, data_dir, {"top1": acc}, config, output.results_dir)


@app.command("linear")
@settings_options((*FROZEN, ("linear probe", S.LinearProbe)))
def linear_cmd(
    checkpoint: str = CHECKPOINT,
    data_dir: Path = IMAGE_FOLDER,
    lrs: str = typer.Option(",".join(map(str, S.LinearProbe.lrs)), rich_help_panel="Linear probe",
                            help=S.LinearProbe.__dataclass_fields__["lrs"].metadata["help"]),
    **settings,
) -> None:
    """Linear probe top-1 on frozen features (SGD, Nesterov 0.9, no weight decay, lr chosen on held-out train); saves the probe."""
    from videonet.evaluation.linear import linear_probe

    try:
        lr_grid = tuple(float(x) for x in lrs.split(","))
    except ValueError as exc:
        raise UserError(f"--lrs must be comma-separated numbers, not {lrs!r}") from exc
    backbone, output, features, workers = _sections(settings, S.Backbone, S.Output, S.Features, S.Workers)
    probe = from_flat(S.LinearProbe, settings, lrs=lr_grid)
    loaded, label, train, val = _frozen_features(checkpoint, data_dir, backbone, output, features, workers)
    res = linear_probe(train.features, train.labels, val.features, val.labels, len(train.classes), probe.lrs,
                       probe.epochs, probe.probe_batch_size, probe.holdout, backbone.seed, train.classes)
    head_path = res.head.save(probe.save_head or output.results_dir / "linear-heads" / f"{label}.pt")
    config = {"lrs": list(probe.lrs), "best_lr": res.best_lr, "sweep": res.sweep, "epochs": probe.epochs,
              "crop_size": features.crop_size, "head": str(head_path)}
    _save("linear", loaded, label, data_dir, {"top1": res.top1}, config, output.results_dir)


@app.command("davis")
@settings_options((*COMMON, ("sequences", S.DavisRun), ("propagation", S.PropagationConfig)))
def davis_cmd(
    checkpoint: str = CHECKPOINT,
    davis_dir: Path = typer.Argument(
        ..., help="DAVIS-2017 root: JPEGImages/480p/<seq>/*.jpg, Annotations/480p/<seq>/*.png, ImageSets/2017/<split>.txt."
    ),
    **settings,
) -> None:
    """Video object segmentation by label propagation with stride-8 res4 features; J and F mean, recall, decay, J&F."""
    from videonet.evaluation import davis
    from videonet.torch_utils import torch_device

    backbone, output, run, config = _sections(settings, S.Backbone, S.Output, S.DavisRun, S.PropagationConfig)
    loaded, label = _load(checkpoint, backbone)
    out = run.masks_dir or output.results_dir / "davis-masks" / label
    feature_fn = davis.backbone_feature_fn(loaded.model, torch_device(output.device))
    chosen = run.sequences.split(",") if run.sequences else None
    metrics, scores = davis.evaluate(davis_dir, feature_fn, out, run.split, config, chosen, run.void)
    if not metrics:
        typer.echo(f"{run.split}: no sequence has every frame annotated; masks written to {out} (nothing scored)")
        return
    cfg = {"split": run.split, "objects": len(scores), "masks": str(out), "void": run.void, **config.__dict__}
    _save("davis", loaded, label, davis_dir, metrics, cfg, output.results_dir)


@app.command("ucf101")
@settings_options((*COMMON, ("workers", S.Workers), ("split and head", S.UcfRun), ("clips", S.ClipConfig),
                   ("schedule", S.UcfSchedule)))
def ucf101_cmd(
    checkpoint: str = CHECKPOINT,
    ucf_dir: Path = typer.Argument(
        ..., help="Root with UCF-101/<Class>/v_*.avi and ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt."
    ),
    **settings,
) -> None:
    """Finetune end to end on 2 s / 12 fps clips (the paper's head and schedule) and report video top-1 (10 clips averaged)."""
    import dataclasses

    from videonet.evaluation import ucf101
    from videonet.torch_utils import torch_device

    backbone, output, workers, run, clip, schedule = _sections(settings, S.Backbone, S.Output, S.Workers, S.UcfRun,
                                                               S.ClipConfig, S.UcfSchedule)
    loaded, label = _load(checkpoint, backbone)
    train = ucf101.TrainConfig.for_schedule(**dataclasses.asdict(schedule), workers=workers.workers, seed=backbone.seed)
    metrics, n_test = ucf101.evaluate(ucf_dir, loaded.model, run.pooling, torch_device(output.device), run.split, clip,
                                      train)
    config = {"split": run.split, "pooling": run.pooling, "test_videos": n_test, **clip.__dict__, **train.__dict__}
    _save(f"ucf101-{run.pooling}", loaded, label, ucf_dir, metrics, config, output.results_dir)


def _explainer(explainer: S.Explainer, checkpoint: str, head: Optional[Path], backbone: S.Backbone,
               device: str = "cpu"):
    """(backbone, label, map function (image, wnid or None) -> map on the CPU, config) of ``--method``.

    The network (and its attention pooling or probe) runs on ``device``.
    """
    from functools import partial

    from videonet.evaluation import attention_maps
    from videonet.torch_utils import torch_device

    dev, method, attention = torch_device(device), explainer.method, explainer.attention
    if method == "attention":
        ckpt = Path(checkpoint)
        if attention is None and not ckpt.exists():
            raise UserError(f"no attention.pt for {checkpoint}: only VITO runs have one; pass --attention PATH "
                            "or use --method gradient")
        path = attention or (ckpt if ckpt.is_dir() else ckpt.parent) / "attention.pt"
        pool = attention_maps.load_attention(path)
        loaded, label = _load(checkpoint, backbone)
        if pool.dims[-1] != loaded.feature_dim:
            raise UserError(f"{path} was trained on {pool.dims[-1]}-d features but the backbone has {loaded.feature_dim}")
        attend = partial(attention_maps.attention_map, loaded.model.to(dev), pool.to(dev))
        return (loaded, label, lambda image, wnid=None: attend(image.to(dev)).cpu(),
                {"method": method, "attention": str(path)})
    loaded, label = _load(checkpoint, backbone)
    probe = _head(head, loaded).to(dev) if head is not None else None
    explain = partial(attention_maps.gradient_saliency, loaded.model.to(dev), head=probe)
    return (loaded, label, lambda image, wnid=None: explain(image.to(dev), target=wnid).cpu(),
            {"method": method, "head": str(head)})


@app.command("attention")
@settings_options((("checkpoint", S.Backbone), ("maps", S.Explainer), ("grid", S.AttentionGrid)))
def attention_cmd(
    checkpoint: str = CHECKPOINT,
    images: list[Path] = typer.Argument(..., help="Image files and/or folders of images to draw."),
    head: Optional[Path] = typer.Option(None, help="gradient: a probe from `eval linear`; the score is its top logit "
                                        "(default: the norm of the pooled layer4 features)."),
    **settings,
) -> None:
    """Overlay attention masks (mean of both scales) or gradient saliency on images (`eval clickme` scores them)."""
    from videonet.evaluation import attention_maps

    backbone, explainer, grid = _sections(settings, S.Backbone, S.Explainer, S.AttentionGrid)
    _, _, explain, _ = _explainer(explainer, checkpoint, head, backbone)
    out = attention_maps.draw_grid(explain, attention_maps.list_images(images), grid.out, grid.size, grid.columns)
    typer.echo(f"wrote {out}")


@app.command("clickme")
@settings_options((*COMMON, ("maps", S.Explainer)))
def clickme_cmd(
    checkpoint: str = CHECKPOINT,
    clickme_dir: Path = typer.Argument(..., help="The official val-<i>.tfrecords shards as downloaded; or "
                                       "images/<name>.jpg, maps/<name>.png|npy (raw human maps, same stem) and "
                                       "labels.csv (name,label: wnid or ImageNet index; needed by --method gradient)."),
    head: Optional[Path] = typer.Option(None, help="gradient: the probe of `eval linear`; the saliency is of its "
                                        "ground-truth class logit."),
    **settings,
) -> None:
    """ClickMe alignment as harmonization's evaluate_clickme: Spearman with the blurred human maps, / the 0.65753 ceiling."""
    from videonet.evaluation import clickme

    backbone, output, explainer = _sections(settings, S.Backbone, S.Output, S.Explainer)
    samples = clickme.read_clickme(clickme_dir)
    if explainer.method == "gradient":
        unlabelled = [s.name for s in samples if s.wnid is None]
        if head is None or unlabelled:
            raise UserError(f"--method gradient explains the ground-truth class: it needs --head and a label in "
                            f"{clickme_dir / 'labels.csv'} for every image"
                            + (f" (none for {', '.join(unlabelled[:3])})" if unlabelled else ""))
    loaded, label, explain, config = _explainer(explainer, checkpoint, head, backbone, output.device)
    metrics = clickme.evaluate_clickme(explain, samples).metrics()
    eval_name = "clickme" if explainer.method == "attention" else "clickme-gradient"
    _save(eval_name, loaded, label, clickme_dir, metrics, config, output.results_dir)


def _classified(settings: dict, checkpoint: str):
    """The sections of a command that classifies with the probe, the backbone and its device."""
    from videonet.torch_utils import torch_device

    backbone, output, features, workers = _sections(settings, S.Backbone, S.Output, S.Features, S.Workers)
    loaded, label = _load(checkpoint, backbone)
    return loaded, label, output, features, workers, torch_device(output.device)


ROBUSTNESS = {
    "imagenet-a": ("ImageNet-A as unpacked: DATA_DIR/<wnid>/*.jpg (200 wnids).",
                   "ImageNet-A top-1 of the frozen backbone + linear probe, logits restricted to its 200 classes."),
    "imagenet-vid": ("imagenet-vid-robust/ as unpacked: val/, metadata/{labels,pmsets}.json, "
                     "misc/{imagenet_vid_class_index,rev_wnid_map}.json.",
                     "ImageNet-Vid-Robust pm-0 (anchor accuracy) and pm-10 (anchor and its +-10 frames all correct)."),
}


def _register_robustness(kind: str, data_help: str, doc: str) -> None:
    """One `eval <kind>` command per robustness test set: the same options, a different reader."""

    @settings_options(FROZEN)
    def command(checkpoint: str = CHECKPOINT, data_dir: Path = typer.Argument(..., help=data_help), head: Path = HEAD,
                **settings) -> None:
        from videonet.evaluation import robustness

        loaded, label, output, features, workers, device = _classified(settings, checkpoint)
        run = robustness.imagenet_a if kind == "imagenet-a" else robustness.imagenet_vid_robust
        metrics = run(data_dir, loaded.model, _head(head, loaded), device, features.crop_size, features.batch_size,
                      workers.workers)
        _save(kind, loaded, label, data_dir, metrics, {"head": str(head), "crop_size": features.crop_size},
              output.results_dir)

    command.__doc__ = doc
    app.command(kind)(command)


for _kind, (_data_help, _doc) in ROBUSTNESS.items():
    _register_robustness(_kind, _data_help, _doc)


@app.command("imagenet-3dcc")
@settings_options(FROZEN)
def imagenet_3dcc_cmd(
    checkpoint: str = CHECKPOINT,
    data_dir: Path = typer.Argument(..., help="ImageNet-3DCC as unpacked: DATA_DIR/<corruption>/<severity>/<wnid>/*.JPEG."),
    head: Path = HEAD,
    corruptions: str = typer.Option("3d", help="3d (the paper's: near_focus, far_focus, fog_3d, flash, xy_motion_blur, "
                                    "z_motion_blur), all (the release's 12) or a comma-separated list."),
    clean: Optional[Path] = typer.Option(None, help="ImageNet val (<wnid>/*.JPEG): adds clean top-1 and the change "
                                         "from it (delta_*), plotted as the paper does."),
    **settings,
) -> None:
    """ImageNet-3DCC top-1 by corruption and severity (RESULTS_DIR/imagenet-3dcc-<name>.png plots it by severity)."""
    from videonet.evaluation import robustness

    chosen = robustness.select_corruptions(corruptions)
    robustness.list_3dcc(data_dir, chosen)  # a wrong root fails before the weights load
    loaded, label, output, features, workers, device = _classified(settings, checkpoint)
    result = robustness.imagenet_3dcc(data_dir, loaded.model, _head(head, loaded), device, chosen, clean,
                                      features.crop_size, features.batch_size, workers.workers)
    if result.missing:
        typer.echo(f"imagenet-3dcc: not in {data_dir}, left out: {', '.join(result.missing)}")
    plot = robustness.plot_by_severity(result, output.results_dir / f"imagenet-3dcc-{label}.png",
                                       f"ImageNet-3DCC: {label}")
    typer.echo(f"wrote {plot}")
    config = {"head": str(head), "crop_size": features.crop_size, "corruptions": list(chosen),
              "missing": result.missing, "clean": str(clean) if clean else None, "plot": str(plot),
              "by_severity": result.table}
    _save("imagenet-3dcc", loaded, label, data_dir, result.metrics(), config, output.results_dir)


@app.command("model-vs-human")
@settings_options(FROZEN)
def model_vs_human_cmd(
    checkpoint: str = CHECKPOINT,
    mvh_dir: Path = typer.Argument(..., help="A model-vs-human checkout with datasets/<name>/ downloaded and raw-data/<name>/*.csv."),
    head: Path = HEAD,
    datasets: str = typer.Option(",".join(S.SHAPE_BIAS_DATASETS), help="Comma-separated model-vs-human datasets."),
    **settings,
) -> None:
    """16-class accuracy, accuracy difference, observed and error consistency with human subjects (and / human-human)."""
    from videonet.evaluation import human

    chosen = tuple(d for d in datasets.split(",") if d)
    unknown = sorted(set(chosen) - set(S.SHAPE_BIAS_DATASETS))
    if unknown or not chosen:
        raise UserError(f"--datasets: {', '.join(unknown) or 'none given'}; "
                        f"choose from {', '.join(S.SHAPE_BIAS_DATASETS)}")
    loaded, label, output, features, workers, device = _classified(settings, checkpoint)
    metrics = human.model_vs_human(mvh_dir, loaded.model, _head(head, loaded), device, chosen, features.crop_size,
                                   features.batch_size, workers.workers)
    _save("model-vs-human", loaded, label, mvh_dir, metrics, {"head": str(head), "datasets": list(chosen)},
          output.results_dir)


@app.command("segment")
@settings_options((*FINETUNE, ("segmentation", S.SegmentSettings)))
def segment_cmd(
    checkpoint: str = CHECKPOINT,
    data_dir: Path = typer.Argument(
        ..., help="PASCAL: VOCdevkit (VOC2012/JPEGImages, SegmentationClassAug, ImageSets/Segmentation/{train_aug,val}.txt); "
        "ADE20K: ADEChallengeData2016 (images|annotations/training|validation)."
    ),
    dataset: str = typer.Option(..., help="pascal | ade20k."),
    **settings,
) -> None:
    """Fine-tune an FCN end to end and report val mIoU (several GPUs: torchrun --nproc_per_node N)."""
    from videonet.evaluation import segment
    from videonet.evaluation.finetune import Finetune, ranks

    if dataset not in segment.SEG_DATASETS:
        raise UserError(f"--dataset must be one of {', '.join(segment.SEG_DATASETS)}, not {dataset!r}")
    backbone, output, workers, smoke, seg = _sections(settings, S.Backbone, S.Output, S.Workers, S.Smoke,
                                                      S.SegmentSettings)
    where = ranks(output.device)
    loaded, label = _load(checkpoint, backbone)
    config = Finetune(seg.epochs or segment.SEG_DATASETS[dataset].epochs, seg.batch_size, seg.lr, seg.weight_decay,
                      max_steps=smoke.steps, workers=workers.workers, seed=backbone.seed)
    metrics, losses, sizes = segment.evaluate(data_dir, dataset, loaded.model, loaded.arch, config, seg.crop_size, where)
    if where.main:
        cfg = {**config.__dict__, "crop_size": seg.crop_size, "first_loss": losses[0], "last_loss": losses[-1], **sizes}
        _save(f"segment-{dataset}", loaded, label, data_dir, metrics, cfg, output.results_dir)


@app.command("detect")
@settings_options((*FINETUNE, ("detection", S.DetectSettings)))
def detect_cmd(
    checkpoint: str = CHECKPOINT,
    data_dir: Path = typer.Argument(
        ..., help="COCO: annotations/instances_{train,val}2017.json, train2017/, val2017/; LVIS: lvis_v1_{train,val}.json."
    ),
    dataset: str = typer.Option(..., help="coco | lvis."),
    images: Optional[Path] = typer.Option(None, help="Folder with train2017/ and val2017/ (default DATA_DIR; LVIS uses COCO's images)."),
    **settings,
) -> None:
    """Fine-tune FCOS (FPN on the ResNet) end to end and report val box AP (several GPUs: torchrun)."""
    from videonet.evaluation import detect
    from videonet.evaluation.finetune import Finetune, ranks

    backbone, output, workers, smoke, det = _sections(settings, S.Backbone, S.Output, S.Workers, S.Smoke,
                                                      S.DetectSettings)
    where = ranks(output.device)
    loaded, label = _load(checkpoint, backbone)
    config = Finetune(det.epochs, det.batch_size, det.lr, det.weight_decay, max_steps=smoke.steps,
                      workers=workers.workers, seed=backbone.seed)
    metrics, losses, sizes = detect.evaluate(data_dir, dataset, loaded.model, loaded.arch, config, where,
                                             det.min_size, det.max_size, images)
    if where.main:
        cfg = {**config.__dict__, "min_size": det.min_size, "max_size": det.max_size, "first_loss": losses[0],
               "last_loss": losses[-1], **sizes}
        _save(f"detect-{dataset}", loaded, label, data_dir, metrics, cfg, output.results_dir)


@app.command("paper")
@settings_options((*FINETUNE, ("paper", S.PaperOptions), ("tables", S.PaperTables)))
def paper_cmd(
    checkpoint: str = CHECKPOINT,
    data_root: Path = typer.Option(
        ..., help="Folder with any of pascal/, ade20k/, coco/, lvis/, davis/, ucf101/, imagenet-a/, "
        "imagenet-vid-robust/, model-vs-human/ (each in its command's layout)."
    ),
    **settings,
) -> None:
    """Run every evaluation whose data is under DATA_ROOT; write the paper's tables with its numbers beside ours."""
    from videonet.evaluation import paper
    from videonet.evaluation.finetune import ranks
    from videonet.evaluation.results import save_result

    backbone, output, workers, smoke, tables = _sections(settings, S.Backbone, S.Output, S.Workers, S.Smoke,
                                                         S.PaperTables)
    if tables.paper_method not in paper.paper_methods():
        raise UserError(f"--paper-method {tables.paper_method!r}: choose from {', '.join(paper.paper_methods())}")
    opts = from_flat(S.PaperOptions, settings, arch=backbone.arch, seed=backbone.seed, workers=workers.workers,
                     max_steps=smoke.steps)
    where = ranks(output.device)
    loaded, label = _load(checkpoint, backbone)
    results = paper.run_paper(loaded, data_root, label, opts, where)
    if where.main:
        for result in results:
            save_result(result, output.results_dir)
        md, *csvs = paper.write_tables(label, results, tables.out or output.results_dir, tables.paper_method)
        typer.echo(md.read_text().rstrip())
        typer.echo(f"wrote {md}, {', '.join(map(str, csvs))}")


@app.command("summary")
def summary_cmd(
    results_dirs: list[Path] = typer.Argument(..., help="Folders of eval result JSON files (e.g. runs/eval)."),
    out: Optional[Path] = typer.Option(None, help="Where to write summary.md and summary.csv (default: the first folder)."),
) -> None:
    """Tabulate every metric of every checkpoint (Markdown + CSV) and print the Markdown table."""
    from videonet.evaluation.results import load_results
    from videonet.evaluation.summary import write_summary

    results = load_results(results_dirs)
    if not results:
        raise UserError(f"no result files (*__*__*.json) in {', '.join(map(str, results_dirs))}")
    md, csv_path = write_summary(results, out or results_dirs[0])
    typer.echo(md.read_text().rstrip())
    typer.echo(f"wrote {md} and {csv_path}")
