"""Integrity of a run directory: which of its files are damaged or missing (read only; what can be
rebuilt is rebuilt by ``videonet curate --repair``, :mod:`videonet.curation.write.repair`).

A run directory is written by atomic renames, but disks fail, copies get cut off and people delete
the file that looks broken. Each reader names a file it cannot read (:class:`~videonet.errors.DamagedRunFile`,
one line, exit 2); :func:`check` finds, before a run, what is missing that the others rely on (a
listing, no file is read: cheap on every run), and :func:`inspect` also reads every table's footer,
every finished mark, every shard's member list and every thumbnail's facts (a repair, or a run that
failed). A file that is missing is as bad as a damaged one: a deleted audit file made the rerun
trust the finished marks and lose its rows; a deleted kept-audit part made it keep the same clips
twice. :func:`unfinished_run` tells the report that the latest run never finished.
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

from videonet.curation.rundir import AUDIT, FINISHED, METADATA, REPORT, REQUESTS, SEARCH, SHARDS, THUMBS, join
from videonet.curation.rundir.files import list_files
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


def stem(path: str, suffix: str) -> str:
    """A file's name without ``suffix``: a part's or a run's name."""
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
    kept_parts = {stem(p, ".parquet") for p in list_files(join(out, AUDIT), "*.parquet")
                  if not _name(p).startswith(DROPS)}
    shards = {stem(p, ".tar") for p in list_files(join(out, SHARDS), "*.tar")}
    for path in list_files(join(out, METADATA), "*.parquet"):
        part = stem(path, ".parquet")
        if part not in kept_parts:
            damage.append(Damage(join(out, AUDIT, f"{part}.parquet"), f"missing: the kept audit rows of {path}"))
        if part not in shards:
            damage.append(Damage(join(out, SHARDS, f"{part}.tar"), f"missing: the shard of {path}"))
    drops, searched = _runs_of_drops(out), {stem(p, ".parquet") for p in list_files(join(out, SEARCH), "*.parquet")}
    for path in list_files(join(out, SEARCH), "*" + FINISHED):
        run = stem(path, FINISHED)
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
        shard = join(out, SHARDS, f"{stem(path, '.parquet')}.tar")
        if path in unreadable or shard in unreadable or not FileSystems.exists(shard):
            continue
        keys = set(read_part(path, ["key"]).column("key").to_pylist())
        if problem := shard_problem(shard, keys):
            damage.append(Damage(shard, problem))
    for path in list_files(join(out, REPORT, THUMBS), "*.json"):
        try:
            with FileSystems.open(path, compression_type="uncompressed") as fh:
                json.loads(fh.read())
        except (ValueError, UnicodeDecodeError) as exc:
            damage.append(Damage(path, f"unreadable thumbnail facts ({_first_line(exc)})"))
    return damage


def read_mark(path: str) -> dict:
    """A finished mark, or :class:`~videonet.errors.DamagedRunFile` naming it (truncated, not a mark)."""
    try:
        with FileSystems.open(path, compression_type="uncompressed") as fh:
            mark = json.loads(fh.read())
        if not (isinstance(mark, dict) and isinstance(mark.get("settings"), str)
                and isinstance(mark.get("classes"), dict)):
            raise ValueError("not a finished mark")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedRunFile(path, f"unreadable finished mark ({str(exc).splitlines()[0]})") from None
    return mark


def refuse(damage: list[Damage]) -> None:
    """One line for the first damaged file, counting the others (the CLI's exit 2)."""
    if damage:
        raise DamagedRunFile(damage[0].path, damage[0].problem, len(damage) - 1)


def read_part(path: str, columns: list[str] | None = None) -> pa.Table:
    with FileSystems.open(path, compression_type="uncompressed") as fh:
        return pq.read_table(fh, columns=columns)


def unfinished_run(out: str) -> str | None:
    """The latest run of the directory if it never finished (no finished mark): its report is partial."""
    runs = set(_runs_of_drops(out))
    runs |= {stem(p, ".parquet") for d in (SEARCH, REQUESTS) for p in list_files(join(out, d), "*.parquet")}
    parts = (_PART_RUN.match(stem(p, ".parquet")) for p in list_files(join(out, METADATA), "*.parquet"))
    runs |= {m["run"] for m in parts if m}
    finished = {stem(p, FINISHED) for p in list_files(join(out, SEARCH), "*" + FINISHED)}
    latest = max(runs, default=None)
    return latest if latest is not None and latest not in finished else None
