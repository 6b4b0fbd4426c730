"""``videonet train``: train VITO on curated shards, or export a checkpoint's backbone and attention.

The options are :class:`~videonet.vito.config.TrainConfig`'s fields (:mod:`videonet.options`): each
default and help text lives once, on the field. Torch and the trainer are imported inside the
command so that ``videonet --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from videonet.errors import UserError
from videonet.options import from_flat, settings_options
from videonet.vito.config import TrainConfig


@settings_options((("training", TrainConfig),))
def train_command(
    data: Optional[str] = typer.Argument(
        None, help="Curated shards: a `videonet curate` run dir (shards/*.tar), a glob, or a brace URL "
                   "(local or fsspec, e.g. gs://bucket/run/shards/shard-{000000..000099}.tar)."),
    out: Optional[str] = typer.Option(
        None, help="Run dir for checkpoints, logs and exports; re-run to resume. With --export, where the exports "
                   "go (local or a Beam filesystem URL such as gs://bucket/dir)."),
    export: Optional[str] = typer.Option(
        None, help="Only export backbone.pt + attention.pt from this checkpoint (file or run dir; local, gs://, "
                   "s3://, ...) into --out (default: beside the checkpoint); no training."),
    branch: str = typer.Option("online", help="With --export: the online (default) or EMA target network."),
    **settings,
) -> None:
    """Train VITO (self-supervised, video) on curated shards; exports backbone.pt and attention.pt at the end.

    Several GPUs or processes: `torchrun --nproc_per_node N -m videonet train ...` (--batch-size is the global batch).
    """
    if export is not None:
        from videonet.vito.train import export as export_checkpoint

        for path in export_checkpoint(export, out, branch):
            typer.echo(f"wrote {path}")
        return
    if data is None or out is None:
        raise UserError("give the shards (DATA) and --out RUN_DIR, or --export CHECKPOINT")
    from videonet.vito.train import train

    train(from_flat(TrainConfig, settings, data=data, out=str(Path(out))))


def register(app: typer.Typer) -> None:
    """Add ``train`` as a command of the main ``videonet`` app."""
    app.command("train")(train_command)
