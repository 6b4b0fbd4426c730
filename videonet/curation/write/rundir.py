"""The run directory: atomic shard commits, recovery after a kill, and reading the tables back.

Layout under ``--out`` (any Beam filesystem: local, gs://, s3://)::

    shards/<part>.tar          WebDataset: <key>.mp4 + <key>.json per kept clip
    metadata/<part>.parquet    one row per kept clip (the commit marker of <part>)
    audit/<part>.parquet       the 'kept' audit rows of <part>
    audit/drops-<run>-*.parquet  every dropped candidate with its status and reason
    search/<run>.parquet       per class: why its search stopped and how many requests it spent
    requests/<run>.parquet     what the requests cost: per class searched and batch judged (requests, 429s, waits)
    report/                    retention tables, summary and report.html
    _work/                     scan cache and staged downloads (safe to delete after a run)

A part is committed by writing the tar, then its kept audit rows, then its metadata, each to a
temporary name renamed into place; a part without metadata is an interrupted commit and is
removed by :func:`recover`, so a kill never leaves a half-visible or duplicated clip.

The audit keeps its history: a candidate whose download failed retriably in one run and was kept in
the next has both rows; :func:`final_rows` gives each candidate's latest, its final status.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import posixpath
import tarfile
import time
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from videonet.curation.write.records import AUDIT_SCHEMA, EXTRA_LABELS, KEPT, METADATA_SCHEMA, audit_row
from videonet.errors import DamagedRunFile

SHARDS, METADATA, AUDIT, SEARCH, REPORT, WORK = "shards", "metadata", "audit", "search", "report", "_work"
REQUESTS = "requests"
# Tests kill a run mid-commit: with this variable naming a file, the first process about to write a part's
# metadata creates it with its pid and waits, so the kill lands between the part's tar and its marker.
PAUSE_BEFORE_MARKER = "VIDEONET_PAUSE_BEFORE_MARKER"


def join(*parts: str) -> str:
    return FileSystems.join(*parts) if "://" in parts[0] else posixpath.join(*parts)


def _list(directory: str, pattern: str) -> list[str]:
    match = FileSystems.match([join(directory, pattern)])[0]
    return sorted(m.path for m in match.metadata_list)


def publish(tmp: str, path: str) -> None:
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def write_atomic(path: str, data: bytes) -> None:
    """Write to ``path.tmp`` then rename, so readers see the whole file or nothing."""
    with FileSystems.create(path + ".tmp") as fh:
        fh.write(data)
    publish(path + ".tmp", path)


def parquet_bytes(rows: list[dict], schema: pa.Schema) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer)
    return buffer.getvalue()


def write_shard(path: str, rows: list[dict], part: str, work: str, trainer_copy: bool = False) -> None:
    """Stream a WebDataset shard (``<key>.json`` + ``<key>.mp4`` per row, key order) to ``path``;
    with ``trainer_copy``, also ``<key>.train.mp4`` (:func:`videonet.vito.transcode.trainer_copy`).

    Each video streams from its file into the tar (``tarfile.addfile`` with the open file and the
    size it had when opened): webdataset's ``TarWriter`` takes a member only as bytes, a whole clip
    in memory. The members are named, owned and moded as its writer makes them, so webdataset reads
    the shards as its own. The tar is spooled through a local temporary file, so memory stays small
    whatever the shard or clip size. A catalog file is opened as the judge opened it (no symlink
    followed: :func:`~videonet.curation.judge.fetch.open_regular`); a download staged under
    ``work`` (the run's own ``_work/``) and a remote file as they are.
    """
    import shutil
    import tempfile

    with tempfile.TemporaryFile() as spool:
        with tarfile.open(fileobj=spool, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
            for row in sorted(rows, key=lambda r: r["key"]):
                facts = json.dumps({k: v for k, v in row.items() if k in METADATA_SCHEMA.names} | {"shard": part},
                                   sort_keys=True).encode()
                tar.addfile(_member(f"{row['key']}.json", len(facts)), io.BytesIO(facts))
                with _video(row["path"], work) as (video, size):
                    tar.addfile(_member(f"{row['key']}.mp4", size), video)
                if trainer_copy:
                    _add_trainer_copy(tar, row, work)
        spool.seek(0)
        with FileSystems.create(path + ".tmp") as fh:
            shutil.copyfileobj(spool, fh, length=8 * 1024 * 1024)
    publish(path + ".tmp", path)


def _add_trainer_copy(tar: tarfile.TarFile, row: dict, work: str) -> None:
    """``<key>.train.mp4`` into ``tar``; a clip the copy fails on keeps its original only (the trainer reads that)."""
    import logging

    import av

    from videonet.vito.transcode import TRAIN_EXT, trainer_copy

    with _video(row["path"], work) as (video, _):
        data = video.read()
    try:
        copy = trainer_copy(data)
    except (av.FFmpegError, ValueError) as exc:
        logging.getLogger(__name__).warning("no trainer-ready copy of %s: %s", row["key"], exc)
        return
    tar.addfile(_member(f"{row['key']}.{TRAIN_EXT}", len(copy)), io.BytesIO(copy))


def _member(name: str, size: int) -> tarfile.TarInfo:
    """A tar member as webdataset's ``TarWriter`` writes one (read-only, owner bigdata)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = size, time.time(), 0o444, "bigdata", "bigdata"
    return info


@contextlib.contextmanager
def _video(path: str, work: str):
    """``(file, size)`` of a kept clip's video for the shard writer."""
    if "://" in path:
        size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
        with FileSystems.open(path, compression_type="uncompressed") as fh:
            yield fh, size
        return
    if path.startswith(work.rstrip("/") + "/"):
        fh = open(path, "rb")
    else:
        from videonet.curation.judge.fetch import open_regular

        fh = os.fdopen(open_regular(path), "rb")
    with fh:
        yield fh, os.fstat(fh.fileno()).st_size


def kept_audit_rows(rows: list[dict]) -> list[dict]:
    """The 'kept' audit rows of a part's kept clips: what a commit writes beside their metadata, and
    what a repair rebuilds from it (:mod:`~videonet.curation.write.integrity`)."""
    kept_audit = [audit_row(r, KEPT, f"class top-1 on {r['matched_frames']} of {r['frames_classified']} "
                               f"classified frames (first at frame {r['first_match']})",
                            r["frames_classified"]) for r in rows]
    # --multi-label: the other classes of a clip are kept in the same commit, under the clip's one key.
    kept_audit += [audit_row(extra, KEPT, f"extra label of clip {r['key']} (class top-1 on "
                                          f"{extra['matched_frames']} of {r['frames_classified']} classified frames)",
                             r["frames_classified"]) for r in rows for extra in r.get(EXTRA_LABELS, ())]
    return kept_audit


def commit_part(out: str, part: str, rows: list[dict], trainer_copy: bool = False) -> None:
    """Commit one shard part: tar, kept audit rows, then metadata (the marker) last."""
    rows = [{**r, "shard": part} for r in sorted(rows, key=lambda r: r["key"])]
    write_shard(join(out, SHARDS, f"{part}.tar"), rows, part, join(out, WORK), trainer_copy)
    write_atomic(join(out, AUDIT, f"{part}.parquet"), parquet_bytes(kept_audit_rows(rows), AUDIT_SCHEMA))
    _pause_before_marker()
    write_atomic(join(out, METADATA, f"{part}.parquet"), parquet_bytes(rows, METADATA_SCHEMA))


def _pause_before_marker(limit_s: float = 600.0) -> None:
    """The tests' kill point (:data:`PAUSE_BEFORE_MARKER`): only the first commit waits; nothing when unset."""
    import os
    import time

    path = os.environ.get(PAUSE_BEFORE_MARKER)
    if not path:
        return
    mine = f"{path}.{os.getpid()}"
    with open(mine, "w") as fh:
        fh.write(str(os.getpid()))
    try:
        os.link(mine, path)  # atomic and exclusive: the file appears with the pid in it, once
    except FileExistsError:
        return
    finally:
        os.unlink(mine)
    time.sleep(limit_s)


def recover(out: str) -> list[str]:
    """Remove what an interrupted run left half-done: temp files, Beam's temporary audit files and
    parts without metadata."""
    removed = []
    for directory in (SHARDS, AUDIT, METADATA):
        removed += _list(join(out, directory), "*.tmp")
    beam_written = (AUDIT, SEARCH, REQUESTS)  # a killed run's unfinished audit, search-facts or requests write
    beam_temp = [p for directory in beam_written for p in _list(join(out, directory), "beam-temp-*/*")]
    removed += beam_temp
    committed = {posixpath.basename(p)[: -len(".parquet")] for p in _list(join(out, METADATA), "*.parquet")}
    for tar in _list(join(out, SHARDS), "*.tar"):
        part = posixpath.basename(tar)[: -len(".tar")]
        if part not in committed:
            removed.append(tar)
            audit = join(out, AUDIT, f"{part}.parquet")
            if FileSystems.exists(audit):
                removed.append(audit)
    if removed:
        FileSystems.delete(removed)
    directories = {posixpath.dirname(p) for p in beam_temp}
    if "://" not in out:  # a run killed before its first temporary audit file leaves the directory empty
        for directory in beam_written:
            directories.update(glob.glob(glob.escape(join(out, directory)) + "/beam-temp-*/"))
    for directory in sorted(directories):
        try:
            FileSystems.delete([directory.rstrip("/")])
        except Exception:  # object stores have no directories to remove
            pass
    return removed


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A part written by an older videonet lacks the newer columns: they read as nulls."""
    for column in schema:
        if column.name not in table.column_names:
            table = table.append_column(column, pa.nulls(len(table), column.type))
    return table.select(schema.names).cast(schema)


def read_table(out: str, directory: str, schema: pa.Schema, columns: list[str] | None = None):
    """All committed Parquet parts of ``out/directory`` as one pandas DataFrame; only ``columns`` (of
    ``schema``) when given: at millions of rows the columns a reader does not need cost gigabytes."""
    schema = pa.schema([schema.field(name) for name in columns]) if columns else schema
    tables = []
    for path in _list(join(out, directory), "*.parquet"):
        try:
            with FileSystems.open(path) as fh:
                part = pq.ParquetFile(io.BytesIO(fh.read()))
            present = set(part.schema_arrow.names)
            tables.append(_conform(part.read(columns=[n for n in schema.names if n in present]), schema))
        except (pa.ArrowException, OSError) as exc:  # truncated, emptied, overwritten: name the file
            raise DamagedRunFile(path, f"unreadable Parquet file ({str(exc).strip().splitlines()[0]})") from None
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return table.to_pandas(self_destruct=True)


def read_audit(out: str, columns: list[str] | None = None):
    return read_table(out, AUDIT, AUDIT_SCHEMA, columns)


def final_rows(audit):
    """The rows of each candidate's (class, video) latest run: its final status.

    A rerun writes rows only for candidates it decided again (those left retriable), so a candidate's
    latest run holds its last word; within one run a candidate may also have a ``duplicate`` row (its
    video met again by another term), which stays. Run ids start with a UTC time stamp; a row of an
    older videonet has none and comes first. The history stays on disk; readers that count use this.
    Only the classes that more than one run audited are grouped per candidate: a class audited by one
    run is final as it is, and grouping millions of candidates costs gigabytes.
    """
    run = audit["run_id"].fillna("")
    wnid = audit["wnid"].fillna("")
    mixed = (run.groupby(wnid).transform("nunique") > 1).to_numpy()
    keep = ~mixed
    if mixed.any():
        again = run[mixed]
        keep[mixed] = (again == again.groupby([wnid[mixed], audit["id"][mixed]]).transform("max")).to_numpy()
    return audit[keep]


def read_metadata(out: str):
    return read_table(out, METADATA, METADATA_SCHEMA)


def shard_paths(out: str) -> list[str]:
    return _list(join(out, SHARDS), "*.tar")


def read_shard(path: str) -> dict[str, dict]:
    """Map key -> {extension: bytes} for one shard (used by checks and tests)."""
    samples: dict[str, dict] = {}
    try:
        with FileSystems.open(path) as fh, tarfile.open(fileobj=io.BytesIO(fh.read())) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    except tarfile.TarError as exc:
        raise DamagedRunFile(path, f"unreadable shard ({exc})") from None
    return samples
