"""Resuming cheaply: a class that a finished run searched to the end, with the same settings and
terms, and all of whose candidates reached a final verdict, is not searched again.

The resume join (``SkipAudited`` in the pipeline) already keeps a rerun from judging or auditing a
candidate twice, but it needs the candidates, so every class would be searched again (requests
against the source's rate limits) and the whole audit joined, only to drop everything. A finished
run writes ``OUT/search/<run_id>.finished.json``: the settings that decide a class's candidates
(search + candidates sections, and the source's content: a catalog's digest) as one key, and per class whose search stopped at ``cap reached`` or
``exhausted`` with no unsettled row (a status outside :data:`FINAL_STATUSES`, e.g. one that a rerun
retries) a hash of its terms. A run killed before the end writes none, so its classes are searched
again and the join does the rest.
"""

from __future__ import annotations

import hashlib
import io
import json

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from videonet.curation.search import CAP_REACHED, EXHAUSTED
from videonet.curation.vocabulary.classes import ImageNetClass
from videonet.curation.rundir import AUDIT, SEARCH, join
from videonet.curation.rundir.files import list_files, write_atomic
from videonet.curation.rundir.integrity import read_mark
from videonet.curation.rundir import FINAL_STATUSES, FINISHED

def settings_key(settings, content: str = "") -> str:
    """What decides a class's candidates: the search and candidates sections of the settings, and the
    source's ``content`` (:meth:`~videonet.curation.search.Source.fingerprint`: a catalog's digest, so
    rows appended or edited after a finished run are searched, and judged, by the rerun)."""
    return hashlib.sha1(repr((settings.search, settings.candidates, content)).encode()).hexdigest()


def terms_key(cls: ImageNetClass) -> str:
    return hashlib.sha1("\t".join(cls.terms).encode()).hexdigest()


def finished_classes(out: str, key: str) -> dict[str, str]:
    """wnid -> terms key of every class a finished run with settings ``key`` completed."""
    done: dict[str, str] = {}
    for path in list_files(join(out, SEARCH), "*" + FINISHED):
        marker = read_mark(path)
        if marker["settings"] == key:
            done.update(marker["classes"])
    return done


def _read(path: str, columns: list[str]):
    with FileSystems.open(path) as fh:
        return pq.read_table(io.BytesIO(fh.read()), columns=columns)


def mark_finished(out: str, run_id: str, key: str, classes: list[ImageNetClass]) -> None:
    """After a run completed: record which of the ``classes`` it searched are finished."""
    stopped = set()
    for path in list_files(join(out, SEARCH), f"{run_id}.parquet"):
        facts = _read(path, ["wnid", "search_stop"]).to_pydict()
        stopped |= {w for w, stop in zip(facts["wnid"], facts["search_stop"]) if stop in (CAP_REACHED, EXHAUSTED)}
    unsettled = set()
    for path in list_files(join(out, AUDIT), f"*{run_id}*.parquet"):
        rows = _read(path, ["wnid", "status"]).to_pydict()
        unsettled |= {w for w, status in zip(rows["wnid"], rows["status"]) if status not in FINAL_STATUSES}
    finished = {c.wnid: terms_key(c) for c in classes if c.wnid in stopped and c.wnid not in unsettled}
    marker = {"run_id": run_id, "settings": key, "classes": finished}
    write_atomic(join(out, SEARCH, run_id + FINISHED), json.dumps(marker, sort_keys=True).encode())


def unfinished(out: str, key: str, classes: list[ImageNetClass]) -> list[ImageNetClass]:
    """The classes a finished run with the same settings and terms did not complete."""
    done = finished_classes(out, key)
    return [c for c in classes if done.get(c.wnid) != terms_key(c)]
