"""``videonet train``: train VITO on curated shards, or export a checkpoint's backbone and attention.

Torch and the trainer are imported inside the command so that ``videonet --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from videonet.errors import UserError


def train_command(
    data: Optional[str] = typer.Argument(
        None, help="Curated shards: a `videonet curate` run dir (shards/*.tar), a glob, or a brace URL "
                   "(local or fsspec, e.g. gs://bucket/run/shards/shard-{000000..000099}.tar)."),
    out: Optional[str] = typer.Option(
        None, help="Run dir for checkpoints, logs and exports; re-run to resume. With --export, where the exports "
                   "go (local or a Beam filesystem URL such as gs://bucket/dir)."),
    steps: int = typer.Option(100_000, help="Total optimisation steps (the schedules span them)."),
    batch_size: int = typer.Option(256, help="Global batch of clips (split across torchrun processes)."),
    views: int = typer.Option(3, help="Views per clip (VITO: 3)."),
    sampler: str = typer.Option("marginal", help="Frame times per view: marginal (VITO) | fixed | chunked | single."),
    window: float = typer.Option(2.56, help="Temporal window in seconds for the video samplers."),
    image_size: int = typer.Option(224, help="Crop size (e.g. 64 for CPU smoke runs)."),
    min_scale: Optional[float] = typer.Option(None, help="Min crop scale (default 0.4 for video, 0.08 for single)."),
    arch: str = typer.Option("resnet50", help="Backbone: resnet50 | resnet18 (small runs)."),
    pooling: str = typer.Option("attn", help="attn (multi-scale attention pooling) | avg."),
    scales: int = typer.Option(2, help="2: blocks 3 and 4; 1: block 4 only."),
    proj_hidden: int = typer.Option(4096, help="Projector/predictor hidden width."),
    proj_dim: int = typer.Option(256, help="Projection dim."),
    tau: float = typer.Option(0.1, help="InfoNCE temperature."),
    base_lr: float = typer.Option(0.3, help="LARS lr per 256 clips (peak lr = base_lr x batch / 256)."),
    weight_decay: float = typer.Option(1e-6, help="Weight decay (not on biases and BatchNorm)."),
    warmup: float = typer.Option(0.03, help="Fraction of steps of linear lr warmup before the cosine decay."),
    ema_base: float = typer.Option(0.996, help="Initial EMA rate of the target (cosine to 1)."),
    seed: int = typer.Option(0, help="Seed of the initialisation and of the whole data stream."),
    workers: Optional[int] = typer.Option(None, help="Data loader processes per GPU/process (default cores - 1, max 8)."),
    shuffle_buffer: int = typer.Option(256, help="Clips in each worker's shuffle buffer."),
    device: str = typer.Option("auto", help="auto | cpu | cuda (bf16 autocast on cuda)."),
    log_every: int = typer.Option(10, help="Log every N steps (stdout, metrics.csv, TensorBoard)."),
    save_every: int = typer.Option(1000, help="Checkpoint every N steps (and at the end)."),
    stop_at: Optional[int] = typer.Option(None, help="Stop (and checkpoint) after this step, e.g. to fit a job limit."),
    export: Optional[str] = typer.Option(
        None, help="Only export backbone.pt + attention.pt from this checkpoint (file or run dir; local, gs://, "
                   "s3://, ...) into --out (default: beside the checkpoint); no training."),
    branch: str = typer.Option("online", help="With --export: the online (default) or EMA target network."),
) -> None:
    """Train VITO (self-supervised, video) on curated shards; exports backbone.pt and attention.pt at the end."""
    if export is not None:
        from videonet.vito.train import export as export_checkpoint

        for path in export_checkpoint(export, out, branch):
            typer.echo(f"wrote {path}")
        return
    if data is None or out is None:
        raise UserError("give the shards (DATA) and --out RUN_DIR, or --export CHECKPOINT")
    from videonet.vito.train import TrainConfig, train

    config = TrainConfig(
        data=data, out=str(Path(out)), steps=steps, batch_size=batch_size, views=views, sampler=sampler, window=window,
        image_size=image_size, min_scale=min_scale, arch=arch, pooling=pooling, scales=scales,
        proj_hidden=proj_hidden, proj_dim=proj_dim, tau=tau, base_lr=base_lr, weight_decay=weight_decay,
        warmup=warmup, ema_base=ema_base, seed=seed, workers=workers, shuffle_buffer=shuffle_buffer, device=device,
        log_every=log_every, save_every=save_every, stop_at=stop_at,
    )
    train(config)


def register(app: typer.Typer) -> None:
    """Add ``train`` as a command of the main ``videonet`` app."""
    app.command("train")(train_command)
