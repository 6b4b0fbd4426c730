"""Fetch a candidate's video to a local file: a catalog path as is, a URL through yt-dlp.

Downloads are bounded (format <= 360p, size and wall-time limits) and live in a temporary
directory that is removed on every path out, success or failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

SMALL_FORMAT = "best[height<=?360][ext=mp4]/best[height<=?360]/worst"


class QuietLogger:
    """yt-dlp prints errors to stderr even when quiet; we report them as audit reasons instead."""

    def debug(self, msg: str) -> None:
        pass

    info = warning = error = debug


class FetchError(Exception):
    """The video could not be fetched; the message is the audit reason."""


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 200 * 1024 * 1024
    max_seconds: float = 300.0
    socket_timeout: float = 30.0
    retries: int = 2


def _download(url: str, directory: str, limits: FetchLimits) -> str:
    import yt_dlp

    started = time.monotonic()

    def guard(progress: dict) -> None:
        # yt-dlp has no total-time option: abort from its progress hook.
        if time.monotonic() - started > limits.max_seconds:
            raise yt_dlp.utils.DownloadError(f"download took longer than {limits.max_seconds:g} s")

    options = {
        "format": SMALL_FORMAT,
        "outtmpl": os.path.join(directory, "video.%(ext)s"),
        "max_filesize": limits.max_bytes,
        "socket_timeout": limits.socket_timeout,
        "retries": limits.retries,
        "fragment_retries": limits.retries,
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "progress_hooks": [guard],
        "logger": QuietLogger(),
        "overwrites": True,
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as exc:
        raise FetchError(" ".join(str(exc).replace("ERROR: ", "").split())[:300]) from None
    files = [f for f in os.listdir(directory) if f.startswith("video.") and not f.endswith(".part")]
    if not files:  # yt-dlp skips (without error) a file over max_filesize
        raise FetchError(f"nothing downloaded (larger than {limits.max_bytes} bytes or no format)")
    return os.path.join(directory, files[0])


@contextmanager
def local_video(url: str | None, path: str | None, limits: FetchLimits = FetchLimits()) -> Iterator[str]:
    """Yield a local file for the candidate; any temporary download is deleted afterwards."""
    if path:
        if not os.path.isfile(path):
            raise FetchError(f"file not found: {path}")
        if not os.access(path, os.R_OK):
            raise FetchError(f"file not readable: {path}")
        yield path
        return
    if not url:
        raise FetchError("candidate has neither url nor path")
    directory = tempfile.mkdtemp(prefix="videonet-fetch-")
    try:
        yield _download(url, directory, limits)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
