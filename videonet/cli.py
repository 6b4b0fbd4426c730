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


def main() -> None:
    """Entry point: run the typer app, turning UserError into one line on stderr and exit 2."""
    try:
        app()
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
