"""The ``videonet`` command line (typer): synonyms, curate, report, show, train, eval.

Every user mistake surfaces as a one-line ``error: ...`` and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from videonet.errors import UserError, printable
from videonet.options import settings_options
from videonet.quiet import quiet_optional_extras

quiet_optional_extras(sys.argv[1:])  # before the imports below bring in apache_beam

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
    exceptions_out: Path = typer.Option(Path("synonyms/noun_exc.tsv"), help=(
        "Where to write WordNet's irregular noun forms (geese, mice), which --title-match inflected reads.")),
) -> None:
    """Expand the 1000 ImageNet classes into query terms with WordNet 3.0 and write the tsv."""
    from videonet.curation.vocabulary.classes import build_table, write_table
    from videonet.curation.vocabulary.wordnet import write_noun_exceptions

    classes = build_table(wordnet_dir, hyponyms=hyponyms)
    write_table(classes, out)
    shared = sum(1 for c in classes if c.shared_terms)
    typer.echo(f"wrote {out}: {len(classes)} classes, {sum(len(c.terms) for c in classes)} terms, "
               f"{shared} classes with terms shared by another class")
    typer.echo(f"wrote {exceptions_out}: {write_noun_exceptions(exceptions_out, wordnet_dir)} irregular noun forms")


@synonyms_app.command("show")
def synonyms_show(
    query: str = typer.Argument(..., help="A wnid, an index (0..999), a class name or a query term."),
    classes: str = typer.Option("imagenet1k", help="Table to search (same grammar as curate --classes)."),
) -> None:
    """Print the row(s) of the synonyms table for a wnid, index or name."""
    from videonet.curation.vocabulary.classes import find_classes, parse_classes

    rows = find_classes(query, parse_classes(classes))
    if not rows:
        raise UserError(f"no class matches {query!r}")
    for c in rows:
        shared = f"  (shared with {', '.join(c.shared_with)}: {', '.join(c.shared_terms)})" if c.shared_terms else ""
        typer.echo(f"{c.index}\t{c.wnid}\t{c.name}\t{' | '.join(c.terms)}{shared}")


def _curate_sections():
    from videonet.curation.settings import CurateSettings, sections_of

    return list(sections_of(CurateSettings))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@settings_options(_curate_sections)
def curate(
    ctx: typer.Context,
    out: str = typer.Option(..., "--out", help="Run directory (local path, gs://, s3://); rerunning it resumes."),
    dry_run: bool = typer.Option(False, help="Only build the pipeline graph with these runner options; "
                                 "nothing on disk changes."),
    repair: bool = typer.Option(False, help="Before resuming, rebuild what a damaged run directory lost (metadata "
                                "from shards, shards from the clips' files, kept audit rows from metadata) and "
                                "remove what cannot be rebuilt; the run then judges those candidates again."),
    **settings,
) -> None:
    """Curate a VideoNet-style dataset: title search -> filters -> classifier -> shards + audit + report.

    Beam pipeline options go after `--`, e.g. `-- --direct_num_workers=2 --direct_running_mode=multi_processing`.
    """
    from videonet.curation.report import format_summary
    from videonet.curation.run import curate as run_curate, dry_run as build_only
    from videonet.curation.settings import CurateSettings

    options = CurateSettings.of(beam_args=list(ctx.args), **settings)
    if dry_run:
        typer.echo(f"pipeline graph for {options.runner.runner}: {build_only(out, options)} transforms (not submitted)")
        return
    typer.echo(format_summary(run_curate(out, options, repair)))
    typer.echo(f"report: {out.rstrip('/')}/report/report.html")


def _run_dir(out: str) -> str:
    """``out`` without a trailing slash, or a one-line error when it holds no curation run."""
    from apache_beam.io.filesystems import FileSystems

    from videonet.curation.rundir import AUDIT, METADATA, join

    out = out.rstrip("/")
    if not FileSystems.exists(join(out, METADATA)) and not FileSystems.exists(join(out, AUDIT)):
        raise UserError(f"{out} is not a curation run directory (no audit/ or metadata/)")
    return out


@app.command()
def report(out: str = typer.Argument(..., help="A curation run directory.")) -> None:
    """Print a run's summary and rebuild its report/ (tables, plot, report.html) from the audit."""
    from videonet.curation.report import build_report, format_summary

    typer.echo(format_summary(build_report(_run_dir(out))))


@app.command()
def show(
    out: str = typer.Argument(..., help="A curation run directory."),
    query: str = typer.Argument(..., metavar="CLASS_OR_CLIP",
                                help="A class (wnid, index or name) or a clip (video id or key)."),
) -> None:
    """Print why a class kept what it kept (counts, kept clips with their matched frames and shards,
    some rejected clips with their reasons), or every verdict on one clip."""
    from videonet.curation.report.show import show as render

    typer.echo(render(_run_dir(out), query))


def main() -> None:
    """Entry point: run the typer app, turning UserError into one line on stderr and exit 2."""
    try:
        app()
    except UserError as exc:
        typer.echo(f"error: {printable(str(exc))}", err=True)  # it may quote a catalog's bytes
        sys.exit(2)
