"""A run directory's integrity: which files are damaged or missing, and what ``--repair`` rebuilds.

A run directory is written by atomic renames, but disks fail, copies get cut off and people delete
the file that looks broken. Each reader names a file it cannot read (:class:`~videonet.errors.DamagedRunFile`,
one line, exit 2); :func:`check` finds, before a run, what is missing that the others rely on (a
listing, no file is read: cheap on every run), and :func:`inspect` also reads every table's footer,
every finished mark and every shard's member list (a repair, or a run that failed). A file that is
missing is as bad as a damaged one: a deleted audit file made the rerun trust the finished marks and
lose its rows; a deleted kept-audit part made it keep the same clips twice.

:func:`repair`, per file:

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
import re
import tarfile
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from videonet.curation.rundir import AUDIT_SCHEMA, METADATA_SCHEMA
from videonet.curation.rundir import FINISHED
from videonet.curation.write.resume import read_mark
from videonet.curation.rundir import AUDIT, METADATA, REPORT, REQUESTS, SEARCH, SHARDS, WORK, join
from videonet.curation.rundir.files import list_files, parquet_bytes, write_atomic
from videonet.curation.write.shards import kept_audit_rows, write_shard
from videonet.curation.rundir import THUMBS
from videonet.errors import DamagedRunFile

DROPS = "drops-"  # audit/drops-<run_id>-<shard>-of-<shards>.parquet: the dropped candidates of a run
_DROPS_SHARD = re.compile(r"^drops-(?P<run>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
_PART_RUN = re.compile(r"^(?P<run>\d{8}T\d{6}-[0-9a-f]{6})-[0-9a-f]{12}$")  # <run_id>-<hash>: WriteShard's names


@dataclass(frozen=True)
class Damage:
    """A file of the run directory that cannot be used as it is, and why (one line)."""

    path: str
    problem: str


def _name(path: str) -> str:
    return posixpath.basename(path.rstrip("/"))


def _stem(path: str, suffix: str) -> str:
    return _name(path)[: -len(suffix)]


def _sizes(directory: str, pattern: str) -> dict[str, int]:
    """path -> size of the files matching ``pattern`` in ``directory``: one listing, no file opened."""
    match = FileSystems.match([join(directory, pattern)])[0]
    return {m.path: m.size_in_bytes for m in match.metadata_list}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parquet_problem(path: str) -> str | None:
    """Why a Parquet part cannot be read (its footer, read alone: a truncated or emptied file has
    none), or None."""
    try:
        with FileSystems.open(path, compression_type="uncompressed") as fh:
            pq.ParquetFile(fh).metadata
    except Exception as exc:  # pyarrow's ArrowInvalid, OSError...: the file is what is wrong
        return f"unreadable Parquet file ({_first_line(exc)})"
    return None


def shard_problem(path: str, keys: set[str]) -> str | None:
    """Why a shard does not hold exactly the clips ``keys`` (an mp4 and a json each, maybe a trainer copy), or None."""
    try:
        with FileSystems.open(path, compression_type="uncompressed") as fh, tarfile.open(fileobj=fh) as tar:
            names = [m.name for m in tar.getmembers()]
    except Exception as exc:
        return f"unreadable shard ({_first_line(exc)})"
    held: dict[str, set[str]] = {}
    for name in names:
        key, _, ext = name.partition(".")
        held.setdefault(key, set()).add(ext)
    if set(held) != keys or any({"json", "mp4"} - exts for exts in held.values()):
        whole = sum({"json", "mp4"} <= exts for exts in held.values())
        return f"shard holds {whole} whole clips where its metadata lists {len(keys)}"
    return None


def _runs_of_drops(out: str) -> dict[str, tuple[int, set[int]]]:
    """run id -> (shards its drops were written in, shard indices present)."""
    runs: dict[str, tuple[int, set[int]]] = {}
    for path in list_files(join(out, AUDIT), DROPS + "*.parquet"):
        match = _DROPS_SHARD.match(_name(path))
        if match:
            count, present = runs.get(match["run"], (int(match["count"]), set()))
            present.add(int(match["index"]))
            runs[match["run"]] = (count, present)
    return runs


def check(out: str) -> list[Damage]:
    """What is missing or empty that the rest of the run directory relies on; read from listings only."""
    damage = []
    kept_parts = {_stem(p, ".parquet") for p in list_files(join(out, AUDIT), "*.parquet") if not _name(p).startswith(DROPS)}
    shards = {_stem(p, ".tar") for p in list_files(join(out, SHARDS), "*.tar")}
    for path in list_files(join(out, METADATA), "*.parquet"):
        part = _stem(path, ".parquet")
        if part not in kept_parts:
            damage.append(Damage(join(out, AUDIT, f"{part}.parquet"), f"missing: the kept audit rows of {path}"))
        if part not in shards:
            damage.append(Damage(join(out, SHARDS, f"{part}.tar"), f"missing: the shard of {path}"))
    drops, searched = _runs_of_drops(out), {_stem(p, ".parquet") for p in list_files(join(out, SEARCH), "*.parquet")}
    for path in list_files(join(out, SEARCH), "*" + FINISHED):
        run = _stem(path, FINISHED)
        count, present = drops.get(run, (1, set()))
        if run not in searched or len(present) < count:
            lacking = "search facts" if run not in searched else f"{count - len(present)} of its {count} audit files"
            damage.append(Damage(path, f"finished mark of a run whose {lacking} are missing"))
    for directory in (AUDIT, METADATA, SEARCH, REQUESTS):
        damage += [Damage(p, "empty file") for p, size in sorted(_sizes(join(out, directory), "*.parquet").items())
                   if size == 0]
    return damage


def inspect(out: str) -> list[Damage]:
    """:func:`check`, and every table's footer, finished mark, shard member list and thumbnail fact read."""
    damage = check(out)
    for directory in (AUDIT, METADATA, SEARCH, REQUESTS):
        for path, size in sorted(_sizes(join(out, directory), "*.parquet").items()):
            if size and (problem := parquet_problem(path)):
                damage.append(Damage(path, problem))
    for path in list_files(join(out, SEARCH), "*" + FINISHED):
        try:
            read_mark(path)
        except DamagedRunFile as exc:
            damage.append(Damage(path, exc.problem))
    unreadable = {d.path for d in damage}
    for path in list_files(join(out, METADATA), "*.parquet"):
        shard = join(out, SHARDS, f"{_stem(path, '.parquet')}.tar")
        if path in unreadable or shard in unreadable or not FileSystems.exists(shard):
            continue
        keys = set(_read_parquet(path, ["key"]).column("key").to_pylist())
        if problem := shard_problem(shard, keys):
            damage.append(Damage(shard, problem))
    for path in list_files(join(out, REPORT, THUMBS), "*.json"):
        try:
            with FileSystems.open(path, compression_type="uncompressed") as fh:
                json.loads(fh.read())
        except (ValueError, UnicodeDecodeError) as exc:
            damage.append(Damage(path, f"unreadable thumbnail facts ({_first_line(exc)})"))
    return damage


def refuse(damage: list[Damage]) -> None:
    """One line for the first damaged file, counting the others (the CLI's exit 2)."""
    if damage:
        raise DamagedRunFile(damage[0].path, damage[0].problem, len(damage) - 1)


def _read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    with FileSystems.open(path, compression_type="uncompressed") as fh:
        return pq.read_table(fh, columns=columns)


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
    rows = sorted(_read_parquet(meta).to_pylist(), key=lambda r: r["key"])
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
    parts = {_stem(p, ".parquet") for p in list_files(join(out, METADATA), "*.parquet")}
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


def unfinished_run(out: str) -> str | None:
    """The latest run of the directory if it never finished (no finished mark): its report is partial."""
    runs = set(_runs_of_drops(out))
    runs |= {_stem(p, ".parquet") for d in (SEARCH, REQUESTS) for p in list_files(join(out, d), "*.parquet")}
    runs |= {m["run"] for p in list_files(join(out, METADATA), "*.parquet") if (m := _PART_RUN.match(_stem(p, ".parquet")))}
    finished = {_stem(p, FINISHED) for p in list_files(join(out, SEARCH), "*" + FINISHED)}
    latest = max(runs, default=None)
    return latest if latest is not None and latest not in finished else None
