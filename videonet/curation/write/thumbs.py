"""The frames behind each verdict: one thumbnail per kept or rejected candidate, for the report.

A curator auditing why a class kept 3 of 40 clips wants to see what the classifier matched in
the kept ones and what it saw instead in the rejected ones. The scan already decoded and
classified those frames (:attr:`videonet.curation.judge.scan.Scan.firsts`); the judge picks the one
behind each verdict (:class:`~videonet.curation.judge.verdicts.Thumb`), the write stage puts it here,
and the report (rebuilt from disk at any time) only links them:

    report/thumbs/<key>.jpg    the frame (112 px JPEG)
    report/thumbs/<key>.json   {"label", "frame", "score"}: its top-1 class, index and score

``<key>`` is the candidate's :func:`~videonet.curation.rundir.clip_key` (the shard key of a
kept clip). They live under ``report/`` rather than ``_work/`` (safe to delete) because the
report links them; a resumed run does not rescan a cached clip, so its thumbnail stays the one
the first run wrote.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from apache_beam.io.filesystems import FileSystems

from videonet.curation.rundir.files import write_atomic
from videonet.errors import DamagedRunFile
from videonet.curation.rundir import thumb_path


def write_thumb(out: str, thumb) -> None:
    """Write one verdict's frame (a :class:`~videonet.curation.judge.verdicts.Thumb`) and its facts."""
    write_atomic(thumb_path(out, thumb.key), thumb.jpeg)
    facts = {"label": thumb.label, "frame": thumb.frame, "score": thumb.score}
    write_atomic(thumb_path(out, thumb.key, "json"), json.dumps(facts).encode())


def _read_facts(out: str, key: str) -> dict | None:
    path = thumb_path(out, key, "json")
    if not FileSystems.exists(path):  # judged before thumbnails existed, or from another outcome
        return None
    try:
        with FileSystems.open(path) as fh:
            return json.loads(fh.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedRunFile(path, f"unreadable thumbnail facts ({str(exc).splitlines()[0]})") from None


def read_thumb_facts(out: str, keys: Iterable[str]) -> dict[str, dict]:
    """Facts of the thumbnails that exist among ``keys``; read in parallel (object stores are slow
    per file, and a report of 1000 classes shows thousands of frames)."""
    keys = list(keys)
    with ThreadPoolExecutor(max_workers=16) as pool:
        found = pool.map(lambda key: _read_facts(out, key), keys)
        return {key: facts for key, facts in zip(keys, found) if facts is not None}
