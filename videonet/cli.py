"""The ``videonet`` command line (typer): synonyms, curate, report, train, eval.

Every user mistake surfaces as a one-line ``error: ...`` and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from videonet.errors import UserError

app = typer.Typer(
    help="Build VideoNet-style curated video datasets and train/evaluate VITO representations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
synonyms_app = typer.Typer(help="The ImageNet-1k vocabulary: class names and WordNet synonyms.", no_args_is_help=True)
app.add_typer(synonyms_app, name="synonyms")
from videonet.vito.cli import register as register_train
register_train(app)
from videonet.evaluation.cli import app as eval_app
app.add_typer(eval_app, name="eval")


@synonyms_app.command("build")
def synonyms_build(
    wordnet_dir: Optional[Path] = typer.Option(
        None, help="WordNet 3.0 dir (nltk data root, corpora/wordnet, or a bare dict dir such as /usr/share/wordnet)."
    ),
    hyponyms: bool = typer.Option(False, help="Also add the lemmas of all hyponyms (the paper used name + synonyms)."),
    out: Path = typer.Option(Path("synonyms/imagenet1k.tsv"), help="Where to write the table."),
) -> None:
    """Expand the 1000 ImageNet classes into query terms with WordNet 3.0 and write the tsv."""
    from videonet.vocab import build_table, write_table

    classes = build_table(wordnet_dir, hyponyms=hyponyms)
    write_table(classes, out)
    shared = sum(1 for c in classes if c.shared_terms)
    typer.echo(f"wrote {out}: {len(classes)} classes, {sum(len(c.terms) for c in classes)} terms, "
               f"{shared} classes with terms shared by another class")


@synonyms_app.command("show")
def synonyms_show(
    query: str = typer.Argument(..., help="A wnid, an index (0..999), a class name or a query term."),
    classes: str = typer.Option("imagenet1k", help="Table to search (same grammar as curate --classes)."),
) -> None:
    """Print the row(s) of the synonyms table for a wnid, index or name."""
    from videonet.vocab import find_classes, parse_classes

    rows = find_classes(query, parse_classes(classes))
    if not rows:
        raise UserError(f"no class matches {query!r}")
    for c in rows:
        shared = f"  (shared with {', '.join(c.shared_with)}: {', '.join(c.shared_terms)})" if c.shared_terms else ""
        typer.echo(f"{c.index}\t{c.wnid}\t{c.name}\t{' | '.join(c.terms)}{shared}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def curate(
    ctx: typer.Context,
    out: str = typer.Option(..., "--out", help="Run directory (local path, gs://, s3://); rerunning it resumes."),
    classes: str = typer.Option("imagenet1k", help="imagenet1k, a comma list of wnids/indices, or a .tsv table."),
    source: str = typer.Option("youtube", help="youtube (yt-dlp search), catalog:PATH (parquet/csv/jsonl), or demo."),
    per_class: int = typer.Option(5000, help="At most this many unique candidates per class."),
    per_term: int = typer.Option(100, help="Search results asked for per query term."),
    min_duration: float = typer.Option(10.0, help="Drop clips shorter than this many seconds."),
    frames: int = typer.Option(100, help="Classify (at most) the first N frames of each clip."),
    chunk: int = typer.Option(25, help="Frames per clip per classifier round (early exit between rounds)."),
    classifier: str = typer.Option("resnet50", help="resnet50 (torchvision) or efficientnet-lite0 (offline weights)."),
    weights: Optional[str] = typer.Option(None, help="Torchvision enum name (IMAGENET1K_V2) or a weights file/URL."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda."),
    precision: str = typer.Option("auto", help="auto (bf16 on GPU and on CPUs with native bf16, else fp32), "
                                  "fp32, bf16 or fp16."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the classifier instead of the CPU "
                                 "oneDNN fusion (pays off on long GPU runs)."),
    clip_batch: int = typer.Option(8, help="Clips classified together in one batch."),
    shard_size: int = typer.Option(100, help="Kept clips per WebDataset/Parquet shard."),
    shard_writers: int = typer.Option(0, help="Parallel shard writers (0: 1 locally, 32 on distributed runners)."),
    catalog_root: Optional[str] = typer.Option(None, help="Catalog paths must stay under this directory."),
    search_template: str = typer.Option("ytsearch{n}:{term}", help="yt-dlp query for the youtube source."),
    demo_dir: Optional[str] = typer.Option(None, help="Where the demo source writes its clips (default: cache)."),
    max_download_mb: float = typer.Option(200.0, help="Abort downloads larger than this."),
    download_timeout: float = typer.Option(300.0, help="Abort downloads taking longer (seconds)."),
    decode_timeout: float = typer.Option(120.0, help="Give up decoding a clip after this many seconds."),
    runner: str = typer.Option("DirectRunner", help="Beam runner: DirectRunner, DataflowRunner, FlinkRunner, ..."),
    progress: bool = typer.Option(True, help="Show tqdm progress on the local runner."),
    dry_run: bool = typer.Option(False, help="Only build the pipeline graph with these runner options."),
) -> None:
    """Curate a VideoNet-style dataset: title search -> filters -> classifier -> shards + audit + report.

    Beam pipeline options go after `--`, e.g. `-- --direct_num_workers=2 --direct_running_mode=multi_processing`.
    """
    from videonet.curate import CurateOptions, curate as run_curate, dry_run as build_only
    from videonet.report import format_summary

    options = CurateOptions(
        out=out, classes=classes, source=source, per_class=per_class, per_term=per_term,
        min_duration=min_duration, frames=frames, chunk=chunk, classifier=classifier, weights=weights,
        device=device, precision=precision, compile=compile, clip_batch=clip_batch, shard_size=shard_size, shard_writers=shard_writers,
        catalog_root=catalog_root, search_template=search_template, demo_dir=demo_dir,
        max_download_mb=max_download_mb, download_timeout_s=download_timeout, decode_timeout_s=decode_timeout,
        runner=runner, beam_args=list(ctx.args), progress=progress)
    if dry_run:
        typer.echo(f"pipeline graph for {runner}: {build_only(options)} transforms (not submitted)")
        return
    typer.echo(format_summary(run_curate(options)))
    typer.echo(f"report: {out.rstrip('/')}/report/report.html")


@app.command()
def report(out: str = typer.Argument(..., help="A curation run directory.")) -> None:
    """Print a run's summary and rebuild its report/ (tables, plot, report.html) from the audit."""
    from videonet.outputs import METADATA, join
    from videonet.report import build_report, format_summary

    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(join(out.rstrip("/"), METADATA)) and not FileSystems.exists(join(out.rstrip("/"), "audit")):
        raise UserError(f"{out} is not a curation run directory (no audit/ or metadata/)")
    typer.echo(format_summary(build_report(out.rstrip("/"))))


def main() -> None:
    """Entry point: run the typer app, turning UserError into one line on stderr and exit 2."""
    try:
        app()
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
