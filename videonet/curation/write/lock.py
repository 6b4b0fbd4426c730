"""One live run per run directory: a second ``videonet curate`` on an ``--out`` that a run holds refuses.

Two runs on one directory would remove each other's in-flight commits (:func:`~videonet.curation.write.shards.recover`
takes a live run's temporary files for a killed run's) and judge the same candidates twice.

- Local directories: ``fcntl.flock`` on ``OUT/_lock``, which also records host and pid for the
  message. The kernel drops the lock when its process dies, so a SIGKILLed run never leaves it stuck.
- Remote directories (gs://, s3://): object stores have no locks. ``OUT/_lock`` holds host, pid and
  a heartbeat that a thread renews every :data:`HEARTBEAT_S`; a run refuses while the heartbeat is
  younger than :data:`STALE_S` (on the same host, only while that pid lives), so a killed run's lock
  goes stale within minutes. Two runs started within the same few seconds can both pass this check:
  it catches the usual mistake (a second command on a live run), it is not a consensus protocol.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from apache_beam.io.filesystems import FileSystems

from videonet.errors import UserError
from videonet.curation.rundir import LOCK, join

HEARTBEAT_S = 30.0
STALE_S = 120.0


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}


def _refusal(out: str, holder: dict) -> UserError:
    return UserError(f"{out} is being curated by another live run (host {holder.get('host')}, pid "
                     f"{holder.get('pid')}); wait for it to finish or stop it first")


@contextmanager
def _local(out: str) -> Iterator[None]:
    import fcntl

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                holder = {}
            raise _refusal(out, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        try:
            yield
        finally:
            os.unlink(path)  # still holding the lock: a run waiting on this file would fail, not sneak in
    finally:
        os.close(fd)


def _alive_elsewhere(holder: dict) -> bool:
    if time.time() - holder.get("heartbeat", 0) > STALE_S:
        return False
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except (ProcessLookupError, KeyError, ValueError):
            return False
    return True


def _write(path: str) -> None:
    with FileSystems.create(path) as fh:
        fh.write(json.dumps(_holder()).encode())


@contextmanager
def _remote(out: str) -> Iterator[None]:
    path = join(out, LOCK)
    if FileSystems.exists(path):
        with FileSystems.open(path) as fh:
            try:
                holder = json.loads(fh.read() or b"{}")
            except ValueError:  # a damaged lock says no live holder: taken over, as a stale one
                holder = {}
        if _alive_elsewhere(holder):
            raise _refusal(out, holder)
    _write(path)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            _write(path)

    thread = threading.Thread(target=beat, name="videonet-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        FileSystems.delete([path])


def hold(out: str):
    """Hold ``out`` for this run (a context manager), or raise a one-line :class:`UserError` naming the holder."""
    return _remote(out) if "://" in out else _local(out)
