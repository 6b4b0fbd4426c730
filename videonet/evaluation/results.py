"""One JSON file per (checkpoint, eval, dataset): what every eval writes and ``summary`` collects.

Files are named ``<checkpoint name>__<eval>__<dataset>.json`` inside a results dir, so re-running
an eval replaces its old number instead of adding a duplicate row, and results from several
machines can be merged by copying files into one folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from videonet.errors import UserError


@dataclass
class EvalResult:
    """The metrics of one eval of one checkpoint on one dataset, with the settings that produced them."""

    eval: str  # knn, linear, davis, ucf101, attention
    name: str  # checkpoint label in tables
    checkpoint: str  # the checkpoint spec as given on the command line
    arch: str
    dataset: str  # dataset dir name
    metrics: dict[str, float]
    config: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def save_result(result: EvalResult, results_dir: Path) -> Path:
    """Write ``result`` as JSON into ``results_dir`` (created if needed) and return the path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{_slug(result.name)}__{_slug(result.eval)}__{_slug(result.dataset)}.json"
    path.write_text(json.dumps(asdict(result), indent=2, default=str) + "\n")
    return path


def load_results(dirs: list[Path]) -> list[EvalResult]:
    """Every result file in the given dirs (not recursive), oldest first."""
    results = []
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"results dir {d} does not exist")
        for path in sorted(d.glob("*__*__*.json")):
            try:
                results.append(EvalResult(**json.loads(path.read_text())))
            except (json.JSONDecodeError, TypeError) as exc:
                raise UserError(f"{path} is not an eval result file: {exc}") from exc
    return sorted(results, key=lambda r: r.created)
