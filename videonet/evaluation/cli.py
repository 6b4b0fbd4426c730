"""``videonet eval``: every evaluation of a checkpoint, each writing a JSON result that ``summary`` tabulates.

Heavy imports (torch, torchvision, PyAV, matplotlib) happen inside the commands so that
``videonet --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from videonet.errors import UserError

app = typer.Typer(
    help="Evaluate checkpoints (ours or torchvision baselines): kNN, linear, DAVIS, UCF-101, attention, segment, "
    "detect, the paper's tables, summary.",
    no_args_is_help=True,
)

CHECKPOINT = typer.Argument(
    ...,
    help="backbone.pt (or any torchvision ResNet state dict), a `videonet train` run dir (local, http(s), gs://, "
    "s3://, ...), 'random', or a torchvision weights name such as ResNet50_Weights.IMAGENET1K_V2.",
)
ARCH = typer.Option(None, help="Architecture for 'random' (default resnet50); checked against the checkpoint otherwise.")
NAME = typer.Option(None, help="Label of this checkpoint in the summary table (default: run dir, file stem or spec).")
RESULTS = typer.Option(Path("runs/eval"), help="Folder that receives the JSON result (read by `videonet eval summary`).")
DEVICE = typer.Option("auto", help="'auto' (GPU if available), 'cpu', 'cuda' or 'cuda:N'.")
SEED = typer.Option(0, help="Seed for random init, data order and augmentation.")


def _load(checkpoint: str, arch: Optional[str], seed: int, name: Optional[str]):
    from videonet.evaluation.backbone import load_backbone

    loaded = load_backbone(checkpoint, arch=arch, seed=seed)
    return loaded, name or loaded.name


def _save(eval_name: str, loaded, label: str, dataset: Path, metrics: dict, config: dict, results_dir: Path) -> None:
    """Record the result and print the metrics on one line."""
    from videonet.evaluation.results import EvalResult, save_result

    result = EvalResult(eval_name, label, loaded.source, loaded.arch, dataset.resolve().name, metrics, config)
    path = save_result(result, results_dir)
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
    typer.echo(f"{eval_name} {label} on {dataset}: {shown}  -> {path}")


def _frozen_features(checkpoint: str, arch: Optional[str], seed: int, name: Optional[str], data_dir: Path,
                     crop_size: int, batch_size: int, workers: int, device: str):
    """The backbone and its train/val features, checking the dataset layout before loading any weights."""
    from videonet.evaluation.features import extract_features, image_folder_splits
    from videonet.torch_utils import torch_device

    train_set, val_set = image_folder_splits(data_dir, crop_size)
    loaded, label = _load(checkpoint, arch, seed, name)
    dev = torch_device(device)
    train = extract_features(loaded.model, train_set, dev, batch_size, workers, desc="train features")
    val = extract_features(loaded.model, val_set, dev, batch_size, workers, desc="val features")
    return loaded, label, train, val


@app.command("knn")
def knn_cmd(
    checkpoint: str = CHECKPOINT,
    data_dir: Path = typer.Argument(..., help="ImageFolder dataset: DATA_DIR/train/<class>/*.jpg and DATA_DIR/val/<class>/*.jpg."),
    k: int = typer.Option(20, help="Neighbours that vote."),
    temperature: float = typer.Option(0.07, help="Vote weight exp(cosine / T), as in DINO."),
    crop_size: int = typer.Option(224, help="Centre crop after resizing the short side to crop*256/224."),
    batch_size: int = typer.Option(64),
    workers: int = typer.Option(4, help="DataLoader worker processes."),
    arch: Optional[str] = ARCH,
    name: Optional[str] = NAME,
    results_dir: Path = RESULTS,
    device: str = DEVICE,
    seed: int = SEED,
) -> None:
    """Weighted kNN top-1 on frozen global features (k=20, cosine, T=0.07)."""
    from videonet.evaluation.knn import knn_accuracy

    loaded, label, train, val = _frozen_features(checkpoint, arch, seed, name, data_dir, crop_size, batch_size, workers, device)
    acc = knn_accuracy(train.features, train.labels, val.features, val.labels, len(train.classes), k, temperature)
    config = {"k": k, "temperature": temperature, "crop_size": crop_size, "train": len(train.labels), "val": len(val.labels)}
    _save("knn", loaded, label, data_dir, {"top1": acc}, config, results_dir)


@app.command("linear")
def linear_cmd(
    checkpoint: str = CHECKPOINT,
    data_dir: Path = typer.Argument(..., help="ImageFolder dataset: DATA_DIR/train/<class>/*.jpg and DATA_DIR/val/<class>/*.jpg."),
    lrs: str = typer.Option("0.01,0.03,0.1,0.3,1.0", help="Comma-separated learning rates to sweep."),
    epochs: int = typer.Option(100, help="Epochs over the cached features per fit."),
    probe_batch_size: int = typer.Option(256, help="Batch size of the linear classifier's SGD."),
    holdout: float = typer.Option(0.2, help="Fraction of train/ held out to choose the learning rate."),
    save_head: Optional[Path] = typer.Option(
        None, help="Where the trained probe goes (default RESULTS_DIR/linear-heads/<name>.pt); the robustness and "
        "model-vs-human evals read it with --head."
    ),
    crop_size: int = typer.Option(224, help="Centre crop after resizing the short side to crop*256/224."),
    batch_size: int = typer.Option(64, help="Batch size of feature extraction."),
    workers: int = typer.Option(4, help="DataLoader worker processes."),
    arch: Optional[str] = ARCH,
    name: Optional[str] = NAME,
    results_dir: Path = RESULTS,
    device: str = DEVICE,
    seed: int = SEED,
) -> None:
    """Linear probe top-1 on frozen features (SGD, Nesterov 0.9, no weight decay, lr chosen on held-out train); saves the probe."""
    from videonet.evaluation.linear import linear_probe

    try:
        lr_grid = tuple(float(x) for x in lrs.split(","))
    except ValueError as exc:
        raise UserError(f"--lrs must be comma-separated numbers, not {lrs!r}") from exc
    loaded, label, train, val = _frozen_features(checkpoint, arch, seed, name, data_dir, crop_size, batch_size, workers, device)
    res = linear_probe(train.features, train.labels, val.features, val.labels, len(train.classes),
                       lr_grid, epochs, probe_batch_size, holdout, seed, train.classes)
    head_path = res.head.save(save_head or results_dir / "linear-heads" / f"{label}.pt")
    config = {"lrs": list(lr_grid), "best_lr": res.best_lr, "sweep": res.sweep, "epochs": epochs, "crop_size": crop_size,
              "head": str(head_path)}
    _save("linear", loaded, label, data_dir, {"top1": res.top1}, config, results_dir)


@app.command("davis")
def davis_cmd(
    checkpoint: str = CHECKPOINT,
    davis_dir: Path = typer.Argument(
        ..., help="DAVIS-2017 root: JPEGImages/480p/<seq>/*.jpg, Annotations/480p/<seq>/*.png, ImageSets/2017/<split>.txt."
    ),
    split: str = typer.Option("val", help="ImageSets/2017/<split>.txt."),
    sequences: Optional[str] = typer.Option(None, help="Comma-separated subset of the split's sequences."),
    masks_dir: Optional[Path] = typer.Option(None, help="Where to write the propagated palette PNGs (default RESULTS_DIR/davis-masks/<name>)."),
    n_context: int = typer.Option(20, help="Previous frames used as keys (besides the first)."),
    topk: int = typer.Option(10, help="Neighbours each position takes labels from."),
    radius: float = typer.Option(18.0, help="Spatial radius in feature cells (stride 8); VFS R50: 36 // 2 (CRW/R18: 12)."),
    temperature: float = typer.Option(0.07, help="Softmax temperature on affinities; VFS R50: 0.07 (CRW: 0.05)."),
    void: str = typer.Option("background", help="Ground-truth void (255) pixels: 'background' (the official "
                             "semi-supervised scoring) or 'ignore'."),
    arch: Optional[str] = ARCH,
    name: Optional[str] = NAME,
    results_dir: Path = RESULTS,
    device: str = DEVICE,
    seed: int = SEED,
) -> None:
    """Video object segmentation by label propagation with stride-8 res4 features; J and F mean, recall, decay, J&F."""
    from videonet.evaluation import davis
    from videonet.torch_utils import torch_device

    loaded, label = _load(checkpoint, arch, seed, name)
    config = davis.PropagationConfig(n_context=n_context, topk=topk, radius=radius, temperature=temperature)
    out = masks_dir or results_dir / "davis-masks" / label
    feature_fn = davis.backbone_feature_fn(loaded.model, torch_device(device))
    chosen = sequences.split(",") if sequences else None
    metrics, scores = davis.evaluate(davis_dir, feature_fn, out, split, config, chosen, void)
    if not metrics:
        typer.echo(f"{split}: no sequence has every frame annotated; masks written to {out} (nothing scored)")
        return
    cfg = {"split": split, "objects": len(scores), "masks": str(out), "void": void, **config.__dict__}
    _save("davis", loaded, label, davis_dir, metrics, cfg, results_dir)


@app.command("ucf101")
def ucf101_cmd(
    checkpoint: str = CHECKPOINT,
    ucf_dir: Path = typer.Argument(
        ..., help="Root with UCF-101/<Class>/v_*.avi and ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt."
    ),
    split: int = typer.Option(1, help="Official split 1, 2 or 3."),
    pooling: str = typer.Option("multiscale", help="multiscale | temporal-attention (the paper's heads) | avg | "
                                "multiscale-concat | temporal-attention-linear (earlier variants)."),
    schedule: str = typer.Option("paper", help="paper (Adam, lr x0.1 after epochs 6, 10, 14) | sgd-cosine (earlier)."),
    epochs: Optional[int] = typer.Option(None, help="Default: paper 16, sgd-cosine 8."),
    lr: Optional[float] = typer.Option(None, help="Default: paper 1e-4, sgd-cosine 0.01."),
    weight_decay: Optional[float] = typer.Option(None, help="Default: paper 0, sgd-cosine 1e-4."),
    batch_size: int = typer.Option(8, help="Clips per step."),
    fps: float = typer.Option(12.0, help="Clip frame rate."),
    seconds: float = typer.Option(2.0, help="Clip length."),
    test_clips: int = typer.Option(10, help="Clips per test video, probabilities averaged."),
    resize: int = typer.Option(256, help="Short side of decoded frames."),
    crop_size: int = typer.Option(224, help="Square crop fed to the backbone."),
    workers: int = typer.Option(4, help="DataLoader worker processes (decoding)."),
    arch: Optional[str] = ARCH,
    name: Optional[str] = NAME,
    results_dir: Path = RESULTS,
    device: str = DEVICE,
    seed: int = SEED,
) -> None:
    """Finetune end to end on 2 s / 12 fps clips (the paper's head and schedule) and report video top-1 (10 clips averaged)."""
    from videonet.evaluation import ucf101
    from videonet.torch_utils import torch_device

    loaded, label = _load(checkpoint, arch, seed, name)
    clip = ucf101.ClipConfig(fps=fps, seconds=seconds, resize=resize, crop=crop_size, test_clips=test_clips)
    train = ucf101.TrainConfig.for_schedule(schedule, epochs=epochs, batch_size=batch_size, lr=lr,
                                            weight_decay=weight_decay, workers=workers, seed=seed)
    metrics, n_test = ucf101.evaluate(ucf_dir, loaded.model, pooling, torch_device(device), split, clip, train)
    config = {"split": split, "pooling": pooling, "test_videos": n_test, **clip.__dict__, **train.__dict__}
    _save(f"ucf101-{pooling}", loaded, label, ucf_dir, metrics, config, results_dir)


def _explainer(method: str, checkpoint: str, attention: Optional[Path], head: Optional[Path], arch: Optional[str],
               seed: int, name: Optional[str]):
    """(backbone, label, map function (image, wnid or None) -> map, config) of ``--method attention|gradient``."""
    from functools import partial

    from videonet.evaluation import attention_maps

    if method not in attention_maps.METHODS:
        raise UserError(f"--method must be one of {', '.join(attention_maps.METHODS)}, not {method!r}")
    if method == "attention":
        ckpt = Path(checkpoint)
        if attention is None and not ckpt.exists():
            raise UserError(f"no attention.pt for {checkpoint}: only VITO runs have one; pass --attention PATH "
                            "or use --method gradient")
        path = attention or (ckpt if ckpt.is_dir() else ckpt.parent) / "attention.pt"
        pool = attention_maps.load_attention(path)
        loaded, label = _load(checkpoint, arch, seed, name)
        if pool.dims[-1] != loaded.feature_dim:
            raise UserError(f"{path} was trained on {pool.dims[-1]}-d features but the backbone has {loaded.feature_dim}")
        attend = partial(attention_maps.attention_map, loaded.model, pool)
        return loaded, label, lambda image, wnid=None: attend(image), {"method": method, "attention": str(path)}
    loaded, label = _load(checkpoint, arch, seed, name)
    probe = _head(head, loaded) if head is not None else None
    explain = partial(attention_maps.gradient_saliency, loaded.model, head=probe)
    return loaded, label, lambda image, wnid=None: explain(image, target=wnid), {"method": method, "head": str(head)}


METHOD = typer.Option("attention", help="attention (VITO's attention pooling, needs attention.pt) | gradient "
                      "(|d score / d pixel|, max over colour; any ResNet).")
ATTENTION = typer.Option(None, help="attention.pt (default: CHECKPOINT/attention.pt for a run dir).")


@app.command("attention")
def attention_cmd(
    checkpoint: str = CHECKPOINT,
    images: list[Path] = typer.Argument(..., help="Image files and/or folders of images to draw."),
    method: str = METHOD,
    attention: Optional[Path] = ATTENTION,
    head: Optional[Path] = typer.Option(None, help="gradient: a probe from `eval linear`; the score is its top logit "
                                        "(default: the norm of the pooled layer4 features)."),
    out: Path = typer.Option(Path("runs/eval/attention.png"), help="PNG grid to write."),
    size: int = typer.Option(224, help="Images are resized (short side) and centre-cropped to this size."),
    columns: int = typer.Option(4, help="Grid columns."),
    arch: Optional[str] = ARCH,
    name: Optional[str] = NAME,
    seed: int = SEED,
) -> None:
    """Overlay attention masks (mean of both scales) or gradient saliency on images (`eval clickme` scores them)."""
    from videonet.evaluation import attention_maps

    _, _, explain, _ = _explainer(method, checkpoint, attention, head, arch, seed, name)
    grid = attention_maps.draw_grid(explain, attention_maps.list_images(images), out, size, columns)
    typer.echo(f"wrote {grid}")


@app.command("clickme")
def clickme_cmd(
    checkpoint: str = CHECKPOINT,
    clickme_dir: Path = typer.Argument(..., help="images/<name>.jpg, maps/<name>.png|npy (raw human maps, same stem) "
                                       "and labels.csv (name,label: wnid or ImageNet index; needed by --method gradient)."),
    method: str = METHOD,
    attention: Optional[Path] = ATTENTION,
    head: Optional[Path] = typer.Option(None, help="gradient: the probe of `eval linear`; the saliency is of its "
                                        "ground-truth class logit."),
    arch: Optional[str] = ARCH,
    name: Optional[str] = NAME,
    results_dir: Path = RESULTS,
    seed: int = SEED,
) -> None:
    """ClickMe alignment as harmonization's evaluate_clickme: Spearman with the blurred human maps, / the 0.65753 ceiling."""
    from videonet.evaluation import clickme

    samples = clickme.read_clickme(clickme_dir)
    if method == "gradient":
        unlabelled = [s.name for s in samples if s.wnid is None]
        if head is None or unlabelled:
            raise UserError(f"--method gradient explains the ground-truth class: it needs --head and a label in "
                            f"{clickme_dir / 'labels.csv'} for every image"
                            + (f" (none for {', '.join(unlabelled[:3])})" if unlabelled else ""))
    loaded, label, explain, config = _explainer(method, checkpoint, attention, head, arch, seed, name)
    metrics = clickme.evaluate_clickme(explain, samples).metrics()
    eval_name = "clickme" if method == "attention" else "clickme-gradient"
    _save(eval_name, loaded, label, clickme_dir, metrics, config, results_dir)


def _head(path: Path, loaded):
    """The ``eval linear`` probe at ``path``, checked against the backbone's feature width."""
    from videonet.evaluation.linear import LinearHead

    return LinearHead.load(path, loaded.feature_dim)


HEAD = typer.Option(..., help="The probe saved by `videonet eval linear` (RESULTS_DIR/linear-heads/<name>.pt), trained on "
                    "ImageNet's wnid folders.")
CROP = typer.Option(224, help="Centre crop after resizing the short side to crop*256/224 (as the probe was trained).")
BATCH = typer.Option(64, help="Batch size of feature extraction.")
WORKERS = typer.Option(4, help="DataLoader worker processes.")


def _robustness(kind: str, checkpoint: str, data_dir: Path, head: Path, crop_size: int, batch_size: int,
                workers: int, arch: Optional[str], name: Optional[str], results_dir: Path, device: str, seed: int) -> None:
    """Load the backbone and probe, run ImageNet-A or ImageNet-Vid-Robust, record it."""
    from videonet.evaluation import robustness
    from videonet.torch_utils import torch_device

    loaded, label = _load(checkpoint, arch, seed, name)
    run = robustness.imagenet_a if kind == "imagenet-a" else robustness.imagenet_vid_robust
    metrics = run(data_dir, loaded.model, _head(head, loaded), torch_device(device), crop_size, batch_size, workers)
    _save(kind, loaded, label, data_dir, metrics, {"head": str(head), "crop_size": crop_size}, results_dir)


ROBUSTNESS = {
    "imagenet-a": ("ImageNet-A as unpacked: DATA_DIR/<wnid>/*.jpg (200 wnids).",
                   "ImageNet-A top-1 of the frozen backbone + linear probe, logits restricted to its 200 classes."),
    "imagenet-vid": ("imagenet-vid-robust/ as unpacked: val/, metadata/{labels,pmsets}.json, "
                     "misc/{imagenet_vid_class_index,rev_wnid_map}.json.",
                     "ImageNet-Vid-Robust pm-0 (anchor accuracy) and pm-10 (anchor and its +-10 frames all correct)."),
}


def _register_robustness(kind: str, data_help: str, doc: str) -> None:
    """One `eval <kind>` command per robustness test set: the same options, a different reader."""

    def command(
        checkpoint: str = CHECKPOINT,
        data_dir: Path = typer.Argument(..., help=data_help),
        head: Path = HEAD, crop_size: int = CROP, batch_size: int = BATCH, workers: int = WORKERS,
        arch: Optional[str] = ARCH, name: Optional[str] = NAME, results_dir: Path = RESULTS, device: str = DEVICE,
        seed: int = SEED,
    ) -> None:
        _robustness(kind, checkpoint, data_dir, head, crop_size, batch_size, workers, arch, name, results_dir, device, seed)

    command.__doc__ = doc
    app.command(kind)(command)


for _kind, (_data_help, _doc) in ROBUSTNESS.items():
    _register_robustness(_kind, _data_help, _doc)


@app.command("imagenet-3dcc")
def imagenet_3dcc_cmd(
    checkpoint: str = CHECKPOINT,
    data_dir: Path = typer.Argument(..., help="ImageNet-3DCC as unpacked: DATA_DIR/<corruption>/<severity>/<wnid>/*.JPEG."),
    corruptions: str = typer.Option("3d", help="3d (the paper's: near_focus, far_focus, fog_3d, flash, xy_motion_blur, "
                                    "z_motion_blur), all (the release's 12) or a comma-separated list."),
    clean: Optional[Path] = typer.Option(None, help="ImageNet val (<wnid>/*.JPEG): adds clean top-1 and the change "
                                         "from it (delta_*), plotted as the paper does."),
    head: Path = HEAD, crop_size: int = CROP, batch_size: int = BATCH, workers: int = WORKERS,
    arch: Optional[str] = ARCH, name: Optional[str] = NAME, results_dir: Path = RESULTS, device: str = DEVICE,
    seed: int = SEED,
) -> None:
    """ImageNet-3DCC top-1 by corruption and severity (RESULTS_DIR/imagenet-3dcc-<name>.png plots it by severity)."""
    from videonet.evaluation import robustness
    from videonet.torch_utils import torch_device

    chosen = robustness.select_corruptions(corruptions)
    robustness.list_3dcc(data_dir, chosen)  # a wrong root fails before the weights load
    loaded, label = _load(checkpoint, arch, seed, name)
    result = robustness.imagenet_3dcc(data_dir, loaded.model, _head(head, loaded), torch_device(device), chosen, clean,
                                      crop_size, batch_size, workers)
    if result.missing:
        typer.echo(f"imagenet-3dcc: not in {data_dir}, left out: {', '.join(result.missing)}")
    plot = robustness.plot_by_severity(result, results_dir / f"imagenet-3dcc-{label}.png", f"ImageNet-3DCC: {label}")
    typer.echo(f"wrote {plot}")
    config = {"head": str(head), "crop_size": crop_size, "corruptions": list(chosen), "missing": result.missing,
              "clean": str(clean) if clean else None, "plot": str(plot), "by_severity": result.table}
    _save("imagenet-3dcc", loaded, label, data_dir, result.metrics(), config, results_dir)


@app.command("model-vs-human")
def model_vs_human_cmd(
    checkpoint: str = CHECKPOINT,
    mvh_dir: Path = typer.Argument(..., help="A model-vs-human checkout with datasets/<name>/ downloaded and raw-data/<name>/*.csv."),
    datasets: str = typer.Option(",".join(("edge", "cue-conflict", "low-pass", "uniform-noise")),
                                 help="Comma-separated model-vs-human datasets."),
    head: Path = HEAD, crop_size: int = CROP, batch_size: int = BATCH, workers: int = WORKERS,
    arch: Optional[str] = ARCH, name: Optional[str] = NAME, results_dir: Path = RESULTS, device: str = DEVICE,
    seed: int = SEED,
) -> None:
    """16-class accuracy, accuracy difference, observed and error consistency with human subjects (and / human-human)."""
    from videonet.evaluation import human
    from videonet.torch_utils import torch_device

    chosen = tuple(d for d in datasets.split(",") if d)
    unknown = sorted(set(chosen) - set(human.SHAPE_BIAS_DATASETS))
    if unknown or not chosen:
        raise UserError(f"--datasets: {', '.join(unknown) or 'none given'}; choose from {', '.join(human.SHAPE_BIAS_DATASETS)}")
    loaded, label = _load(checkpoint, arch, seed, name)
    metrics = human.model_vs_human(mvh_dir, loaded.model, _head(head, loaded), torch_device(device), chosen,
                                   crop_size, batch_size, workers)
    _save("model-vs-human", loaded, label, mvh_dir, metrics, {"head": str(head), "datasets": list(chosen)}, results_dir)


STEPS = typer.Option(None, help="Stop after this many steps (smoke runs); the learning-rate schedule spans them.")


@app.command("segment")
def segment_cmd(
    checkpoint: str = CHECKPOINT,
    data_dir: Path = typer.Argument(
        ..., help="PASCAL: VOCdevkit (VOC2012/JPEGImages, SegmentationClassAug, ImageSets/Segmentation/{train_aug,val}.txt); "
        "ADE20K: ADEChallengeData2016 (images|annotations/training|validation)."
    ),
    dataset: str = typer.Option(..., help="pascal | ade20k."),
    epochs: Optional[int] = typer.Option(None, help="Default: the paper's 45 on PASCAL train_aug, 60 on ADE20K train."),
    steps: Optional[int] = STEPS,
    batch_size: int = typer.Option(16, help="Global batch, split over torchrun processes."),
    lr: float = typer.Option(0.04, help="Peak learning rate, polynomial decay (power 0.9) per step."),
    weight_decay: float = typer.Option(0.005),
    crop_size: int = typer.Option(512, help="Training crops and test windows (the base scale's short side)."),
    workers: int = WORKERS,
    arch: Optional[str] = ARCH,
    name: Optional[str] = NAME,
    results_dir: Path = RESULTS,
    device: str = DEVICE,
    seed: int = SEED,
) -> None:
    """Fine-tune an FCN end to end and report val mIoU (several GPUs: torchrun --nproc_per_node N)."""
    from videonet.evaluation import segment
    from videonet.evaluation.finetune import Finetune, ranks

    if dataset not in segment.SEG_DATASETS:
        raise UserError(f"--dataset must be one of {', '.join(segment.SEG_DATASETS)}, not {dataset!r}")
    where = ranks(device)
    loaded, label = _load(checkpoint, arch, seed, name)
    config = Finetune(epochs or segment.SEG_DATASETS[dataset].epochs, batch_size, lr, weight_decay,
                      max_steps=steps, workers=workers, seed=seed)
    metrics, losses, sizes = segment.evaluate(data_dir, dataset, loaded.model, loaded.arch, config, crop_size, where)
    if where.main:
        cfg = {**config.__dict__, "crop_size": crop_size, "first_loss": losses[0], "last_loss": losses[-1], **sizes}
        _save(f"segment-{dataset}", loaded, label, data_dir, metrics, cfg, results_dir)


@app.command("detect")
def detect_cmd(
    checkpoint: str = CHECKPOINT,
    data_dir: Path = typer.Argument(
        ..., help="COCO: annotations/instances_{train,val}2017.json, train2017/, val2017/; LVIS: lvis_v1_{train,val}.json."
    ),
    dataset: str = typer.Option(..., help="coco | lvis."),
    images: Optional[Path] = typer.Option(None, help="Folder with train2017/ and val2017/ (default DATA_DIR; LVIS uses COCO's images)."),
    epochs: int = typer.Option(26, help="torchvision's FCOS reference schedule; lr x0.1 at 16/26 and 22/26 of the run."),
    steps: Optional[int] = STEPS,
    batch_size: int = typer.Option(16, help="Global batch, split over torchrun processes."),
    lr: float = typer.Option(0.01, help="Peak learning rate after a 1000-step linear warmup."),
    weight_decay: float = typer.Option(1e-4),
    min_size: int = typer.Option(800, help="Short side images are resized to."),
    max_size: int = typer.Option(1333, help="Cap on the long side."),
    workers: int = WORKERS,
    arch: Optional[str] = ARCH,
    name: Optional[str] = NAME,
    results_dir: Path = RESULTS,
    device: str = DEVICE,
    seed: int = SEED,
) -> None:
    """Fine-tune FCOS (FPN on the ResNet) end to end and report val box AP (several GPUs: torchrun)."""
    from videonet.evaluation import detect
    from videonet.evaluation.finetune import Finetune, ranks

    where = ranks(device)
    loaded, label = _load(checkpoint, arch, seed, name)
    config = Finetune(epochs, batch_size, lr, weight_decay, max_steps=steps, workers=workers, seed=seed)
    metrics, losses, sizes = detect.evaluate(data_dir, dataset, loaded.model, loaded.arch, config, where,
                                             min_size, max_size, images)
    if where.main:
        cfg = {**config.__dict__, "min_size": min_size, "max_size": max_size, "first_loss": losses[0],
               "last_loss": losses[-1], **sizes}
        _save(f"detect-{dataset}", loaded, label, data_dir, metrics, cfg, results_dir)


@app.command("paper")
def paper_cmd(
    checkpoint: str = CHECKPOINT,
    data_root: Path = typer.Option(
        ..., help="Folder with any of pascal/, ade20k/, coco/, lvis/, davis/, ucf101/, imagenet-a/, "
        "imagenet-vid-robust/ (each in its command's layout)."
    ),
    linear_head: Optional[Path] = typer.Option(None, help="Probe of `eval linear` (needed by imagenet-a/ and "
                                               "imagenet-vid-robust/)."),
    out: Optional[Path] = typer.Option(None, help="Where paper.md and paper_*.csv go (default RESULTS_DIR)."),
    paper_method: str = typer.Option("VITO (VideoNet)", help="The published row the difference column compares with, "
                                     "e.g. 'Supervised (ImageNet)' when evaluating that baseline."),
    steps: Optional[int] = STEPS,
    epochs: Optional[int] = typer.Option(None, help="Override every fine-tuning's epochs (default: each protocol's)."),
    batch_size: Optional[int] = typer.Option(None, help="Override the segmentation/detection global batch (16)."),
    crop_size: int = typer.Option(512, help="Segmentation crops."),
    min_size: int = typer.Option(800, help="Detection short side."),
    max_size: int = typer.Option(1333, help="Detection long-side cap."),
    workers: int = WORKERS,
    arch: Optional[str] = ARCH,
    name: Optional[str] = NAME,
    results_dir: Path = RESULTS,
    device: str = DEVICE,
    seed: int = SEED,
) -> None:
    """Run every evaluation whose data is under DATA_ROOT; write the paper's Table 1 and scene-understanding table."""
    from videonet.evaluation import paper
    from videonet.evaluation.finetune import ranks
    from videonet.evaluation.results import save_result

    if paper_method not in paper.paper_methods():
        raise UserError(f"--paper-method {paper_method!r}: choose from {', '.join(paper.paper_methods())}")
    where = ranks(device)
    loaded, label = _load(checkpoint, arch, seed, name)
    opts = paper.PaperOptions(arch=loaded.arch, seed=seed, workers=workers, max_steps=steps, epochs=epochs,
                              batch_size=batch_size, crop_size=crop_size, min_size=min_size, max_size=max_size,
                              linear_head=linear_head)
    results = paper.run_paper(loaded, data_root, label, opts, where)
    if where.main:
        for result in results:
            save_result(result, results_dir)
        md, *csvs = paper.write_tables(label, results, out or results_dir, paper_method)
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
