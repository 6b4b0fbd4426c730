"""The comparison table: one row per checkpoint, one column per (eval, dataset, metric), as Markdown and CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from videonet.evaluation.results import EvalResult


def build_table(results: list[EvalResult]) -> tuple[list[str], list[list[str]]]:
    """Header and rows; later results for the same cell win, missing cells are empty.

    Columns are named ``<eval>/<dataset>:<metric>`` so two datasets of the same eval never collide.
    Rows keep the order in which checkpoints first appear.
    """
    cells: dict[str, dict[str, float]] = {}
    archs: dict[str, str] = {}
    columns: list[str] = []
    for r in results:
        row = cells.setdefault(r.name, {})
        archs[r.name] = r.arch
        for metric, value in r.metrics.items():
            column = f"{r.eval}/{r.dataset}:{metric}"
            if column not in columns:
                columns.append(column)
            row[column] = value
    header = ["checkpoint", "arch", *columns]
    rows = [[name, archs[name], *(_fmt(row.get(c)) for c in columns)] for name, row in cells.items()]
    return header, rows


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def write_summary(results: list[EvalResult], out_dir: Path) -> tuple[Path, Path]:
    """Write ``summary.md`` and ``summary.csv`` into ``out_dir`` and return their paths."""
    header, rows = build_table(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv_path = out_dir / "summary.md", out_dir / "summary.csv"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    md.write_text("\n".join(lines) + "\n")
    with csv_path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return md, csv_path
