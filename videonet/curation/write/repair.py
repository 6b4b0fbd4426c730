"""``videonet curate --repair``: rebuild what a damaged run directory lost, remove what cannot be rebuilt.

What is damaged is found by :func:`videonet.curation.rundir.integrity.inspect`; per file:

- ``metadata/<part>.parquet`` unreadable: rebuilt from its shard's ``<key>.json`` members (the shard
  writer puts every metadata field there);
- ``shards/<part>.tar`` missing, unreadable or not holding the part's clips: rewritten from the clips'
  files (catalog paths, staged downloads) where they all still exist; else the part is withdrawn
  (metadata, kept audit rows and tar removed) and the run that follows judges its candidates again;
- ``audit/<part>.parquet`` (the part's kept rows) missing or unreadable: rebuilt from the metadata;
- ``audit/drops-*``, ``search/*`` and ``requests/*`` parts unreadable: removed (what they held is
  nowhere else: the candidates are judged again, a request's cost is lost); a finished mark that is
  unreadable, or whose run's audit or search facts are incomplete: removed;
- a thumbnail's facts unreadable: the thumbnail is removed (the report shows "no frame").

Once anything of ``audit/`` or ``search/`` is gone, every finished mark is dropped: a mark says all of
a class's verdicts are on disk, which no longer holds. The run that follows searches every class
again and the resume join judges exactly the candidates the audit lacks; a kept clip is never written
twice because its kept audit rows are restored before the join reads them.
"""

from __future__ import annotations

import json
import posixpath
import tarfile

from apache_beam.io.filesystems import FileSystems

from videonet.curation.rundir import (
    AUDIT, AUDIT_SCHEMA, FINISHED, METADATA, METADATA_SCHEMA, SEARCH, SHARDS, THUMBS, WORK, join,
)
from videonet.curation.rundir.files import list_files, parquet_bytes, write_atomic
from videonet.curation.rundir.integrity import inspect, read_part, stem
from videonet.curation.write.shards import kept_audit_rows, write_shard

def _metadata_from_shard(shard: str) -> list[dict] | None:
    """The metadata rows the shard writer put in the shard's json members, or None if it cannot be read."""
    try:
        with FileSystems.open(shard, compression_type="uncompressed") as fh, tarfile.open(fileobj=fh) as tar:
            rows = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    except Exception:
        return None
    return sorted(rows, key=lambda r: r["key"])


WITHDREW = "withdrew part"


def _part_files(out: str, part: str) -> tuple[str, str, str]:
    """A shard part's metadata, shard and kept audit rows."""
    return join(out, METADATA, f"{part}.parquet"), join(out, SHARDS, f"{part}.tar"), join(out, AUDIT, f"{part}.parquet")


def _withdraw(out: str, part: str) -> list[str]:
    """Remove a part's tar, kept audit rows and metadata: its candidates are judged again."""
    meta, shard, audit = _part_files(out, part)
    gone = [p for p in (shard, audit, meta) if FileSystems.exists(p)]  # the marker last, as recover() expects
    if gone:
        FileSystems.delete(gone)
    return [f"{WITHDREW} {part}: neither its metadata nor its shard could be rebuilt; its candidates are judged again"]


def _repair_part(out: str, part: str, bad: set[str], trainer_copy: bool) -> list[str]:
    """Rebuild what one shard part lacks: metadata from its shard, the shard from the clips' files,
    the kept audit rows from the metadata; withdraw it where neither can be had."""
    meta, shard, audit = _part_files(out, part)
    done = []
    shard_ok = FileSystems.exists(shard) and shard not in bad
    if meta in bad:
        rows = _metadata_from_shard(shard) if shard_ok else None
        if not rows:
            return _withdraw(out, part)
        write_atomic(meta, parquet_bytes(rows, METADATA_SCHEMA))
        done.append(f"rebuilt {meta} from its shard")
    rows = sorted(read_part(meta).to_pylist(), key=lambda r: r["key"])
    if not shard_ok:
        if not all(r.get("path") and FileSystems.exists(r["path"]) for r in rows):
            return _withdraw(out, part)
        write_shard(shard, rows, part, join(out, WORK), trainer_copy)
        done.append(f"rebuilt {shard} from the clips' files")
    if audit in bad:
        write_atomic(audit, parquet_bytes(kept_audit_rows(rows), AUDIT_SCHEMA))
        done.append(f"rebuilt {audit} from the metadata")
    return done


def repair(out: str, trainer_copy: bool = False) -> list[str]:
    """Rebuild or remove every damaged file (see the module docstring); what was done, one line each.
    ``trainer_copy``: a rebuilt shard gets trainer copies (``--trainer-copy``)."""
    damage = inspect(out)
    bad = {d.path for d in damage}
    parts = {stem(p, ".parquet") for p in list_files(join(out, METADATA), "*.parquet")}
    part_files = {path for part in parts for path in _part_files(out, part)}
    done: list[str] = []
    for part in sorted(parts):
        if set(_part_files(out, part)) & bad:
            done += _repair_part(out, part, bad, trainer_copy)
    removed = []
    for path in sorted(bad - part_files):
        if not FileSystems.exists(path):
            continue
        removed.append(path)
        if posixpath.basename(posixpath.dirname(path)) == THUMBS and FileSystems.exists(jpg := path[:-5] + ".jpg"):
            removed.append(jpg)
    if removed:
        FileSystems.delete(removed)
        done += [f"removed {path}: what it held cannot be rebuilt" for path in removed]
    lost = any(line.startswith(WITHDREW) for line in done) or \
        any(posixpath.basename(posixpath.dirname(p)) in (AUDIT, SEARCH) for p in removed)
    marks = list_files(join(out, SEARCH), "*" + FINISHED) if lost else []
    if marks:  # they say every verdict of their classes is on disk: no longer true
        FileSystems.delete(marks)
        done.append(f"dropped {len(marks)} finished marks: every class is searched again and the audit decides "
                    "what is judged")
    return done
