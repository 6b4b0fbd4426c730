"""Kept clips into shards: atomic shard commits, and recovery after a kill.

A part is committed by writing the tar, then its kept audit rows, then its metadata, each to a
temporary name renamed into place; a part without metadata is an interrupted commit and is
removed by :func:`recover`, so a kill never leaves a half-visible or duplicated clip.
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

from apache_beam.io.filesystems import FileSystems

from videonet.curation.rundir import (
    AUDIT, AUDIT_SCHEMA, COMPANIONS, EXTRA_LABELS, KEPT, METADATA, METADATA_SCHEMA, REQUESTS, SEARCH, SHARDS, WORK, audit_row, join,
)
from videonet.curation.rundir.files import list_files, parquet_bytes, publish, write_atomic


# Tests kill a run mid-commit: with this variable naming a file, the first process about to write a part's
# metadata creates it with its pid and waits, so the kill lands between the part's tar and its marker.
PAUSE_BEFORE_MARKER = "VIDEONET_PAUSE_BEFORE_MARKER"


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
    """The audit rows of a part's kept clips: their 'kept' rows, and the rows of their other candidates
    (companions); what a commit writes beside their metadata, and what a repair rebuilds from it
    (:mod:`~videonet.curation.write.repair`: the metadata holds no companions, so a repaired part's
    other classes are audited again by the rerun, as kept_for_other_class)."""
    kept_audit = [audit_row(r, KEPT, f"class top-1 on {r['matched_frames']} of {r['frames_classified']} "
                               f"classified frames (first at frame {r['first_match']})",
                            r["frames_classified"]) for r in rows]
    # --multi-label: the other classes of a clip are kept in the same commit, under the clip's one key.
    kept_audit += [audit_row(extra, KEPT, f"extra label of clip {r['key']} (class top-1 on "
                                          f"{extra['matched_frames']} of {r['frames_classified']} classified frames)",
                             r["frames_classified"]) for r in rows for extra in r.get(EXTRA_LABELS, ())]
    return kept_audit + [companion for r in rows for companion in r.get(COMPANIONS, ())]


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
        removed += list_files(join(out, directory), "*.tmp")
    beam_written = (AUDIT, SEARCH, REQUESTS)  # a killed run's unfinished audit, search-facts or requests write
    beam_temp = [p for directory in beam_written for p in list_files(join(out, directory), "beam-temp-*/*")]
    removed += beam_temp
    committed = {posixpath.basename(p)[: -len(".parquet")] for p in list_files(join(out, METADATA), "*.parquet")}
    for tar in list_files(join(out, SHARDS), "*.tar"):
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
