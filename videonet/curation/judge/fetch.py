"""Fetch a candidate's video to a local file: a local catalog path as is, a remote one through Beam's
filesystems, a URL through yt-dlp.

Downloads are bounded (a small H.264 format, at most 480p; size and wall-time limits) and live in a temporary
directory that is removed on every path out, success or failure; the directories of a process
that was killed (SIGKILL, OOM) are swept by the next run on the same machine. yt-dlp runs in a reused child
process (an argument list, never a shell) that is killed at the wall-time limit: a server that stalls or
trickles bytes below yt-dlp's socket timeout cannot hold a worker, and a response without a
Content-Length cannot grow past the size limit (yt-dlp's ``max_filesize`` only checks a known length).
Every download goes through a :class:`~videonet.curation.client.Session` (rate limit, adaptive
throttle, retries of retriable failures); the child answers a failure with its class, so a 429 or a
dropped connection is retried and a 404 is not. With ``--judge-prefix N`` only the first N seconds are
fetched to judge (yt-dlp download ranges, through ffmpeg); the judge fetches the whole video only for
a clip it keeps.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

from videonet.curation.client import (
    ClientSettings, Failure, Session, cookie_values, failure_of, one_line, proxy_secrets, redact, session,
)

# Video only (the classifier and the trainer never hear the sound; no merge, no ffmpeg), H.264 in mp4
# (what PyAV decodes fastest), then looser fallbacks; which one of each kind is yt-dlp's format sort's
# choice (DEFAULT_SORT).
DEFAULT_FORMAT = "bv[vcodec^=avc1][ext=mp4]/bv[ext=mp4]/b[ext=mp4]/bv/b"
# res is a video's smaller side: 480 picks 480x854 of a portrait video or a Short, where a height<=480
# filter picked 270x480 (or 240p); then H.264, then mp4.
DEFAULT_SORT = "res:480,vcodec:h264,ext:mp4"
# When a download runs over --max-download-mb: the smallest format that fits, else the smallest.
SMALLER = {"format": "bv[filesize<?{max}]/b[filesize<?{max}]/wv/w", "format_sort": ["+size", "+br", "+res"]}
URL_SCHEMES = ("http://", "https://")  # what yt-dlp search results are; file://, ftp://, javascript: are refused


class QuietLogger:
    """yt-dlp prints errors to stderr even when quiet; we report them as audit reasons instead."""

    def debug(self, msg: str) -> None:
        pass

    info = warning = error = debug


class FetchError(Exception):
    """The video could not be fetched; the message is the audit reason, ``failure`` its class
    (permanent unless said otherwise: a missing local file does not come back by asking again)."""

    def __init__(self, reason: str, failure: Failure | None = None):
        super().__init__(reason)
        self.failure = failure or Failure(reason, retriable=False)


@dataclass(frozen=True)
class Fetched:
    """A local copy of a candidate's video; ``duration`` is the source's word (yt-dlp's metadata) when
    only a prefix was fetched, else None (probe the file)."""

    path: str
    duration: float | None = None
    prefix: bool = False


@dataclass(frozen=True)
class FetchSettings:
    """Bounds of one download: a hostile or huge video costs at most this much."""

    max_download_mb: float = field(default=200.0, metadata={
        "help": "Refuse videos larger than this: downloads, and local or remote catalog files (before reading).",
        "min": 0})
    download_timeout: float = field(default=300.0, metadata={"help": "Abort downloads taking longer (seconds).",
                                                             "min": 0})
    download_format: str = field(default=DEFAULT_FORMAT, metadata={
        "help": "yt-dlp format of a download (default: video only, H.264 mp4, with fallbacks)."})
    download_sort: str = field(default=DEFAULT_SORT, metadata={
        "help": "yt-dlp format sort, comma list (default: the smaller side nearest 480 px and not above, so portrait "
                "videos and Shorts are not fetched at 240p; then H.264, mp4). A download over --max-download-mb falls "
                "back to the smallest format that fits."})
    judge_prefix: float = field(default=0.0, metadata={
        "help": "Fetch only the first N seconds of a URL to judge it (0: the whole video), and the whole video only "
                "for a kept clip. N must cover --frames frames and --min-duration; needs ffmpeg.", "min": 0})
    socket_timeout: float = field(default=30.0, metadata={"cli": False})
    retries: int = field(default=2, metadata={"cli": False})  # yt-dlp's own retries inside one request

    @property
    def max_bytes(self) -> int:
        return int(self.max_download_mb * 1024 * 1024)

    @property
    def max_seconds(self) -> float:
        return self.download_timeout


class _Guard:
    """The progress hook of a downloader's YoutubeDL: yt-dlp has no total-time option, and
    ``max_filesize`` trusts Content-Length, so both bounds of the current request are checked here."""

    def __init__(self) -> None:
        self.started, self.limits = time.monotonic(), FetchSettings()

    def __call__(self, progress: dict) -> None:
        import yt_dlp

        if time.monotonic() - self.started > self.limits.max_seconds:
            raise yt_dlp.utils.DownloadError(f"download took longer than {self.limits.max_seconds:g} s")
        if (progress.get("downloaded_bytes") or 0) > self.limits.max_bytes:
            raise yt_dlp.utils.DownloadError(f"download exceeded the size limit of {self.limits.max_bytes} bytes")


class _Ydls:
    """This downloader process's YoutubeDL instances, one per option set: an instance keeps YouTube's
    player script and its solved challenges (a new one per video fetched them again each time).

    The cookies file a session names is copied once to a private file (mode 600) in a directory
    swept with this process: yt-dlp rewrites the cookies file it is given, so processes sharing one
    would race, and a read-only one failed every download.
    """

    def __init__(self) -> None:
        self.instances: dict[str, Any] = {}
        self.guard = _Guard()
        self.cookies: dict[str, str] = {}
        self.private = tempfile.mkdtemp(prefix=f"{_host_prefix()}{os.getpid()}-cookies-")
        atexit.register(shutil.rmtree, self.private, True)

    def _private_cookies(self, path: str) -> str:
        if path not in self.cookies:
            copy = os.path.join(self.private, f"{len(self.cookies)}.txt")
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst)
            self.cookies[path] = copy
        return self.cookies[path]

    def get(self, limits: FetchSettings, params: dict, prefix: float, smaller: bool):
        """The YoutubeDL of these options (made on first use)."""
        import yt_dlp
        from yt_dlp.utils import download_range_func

        key = json.dumps([asdict(limits), params, prefix, smaller], sort_keys=True, default=str)
        if key not in self.instances:
            options = {
                "format": limits.download_format,
                "format_sort": [f.strip() for f in limits.download_sort.split(",") if f.strip()],
                "socket_timeout": min(limits.socket_timeout, limits.max_seconds),
                "retries": limits.retries,
                "fragment_retries": limits.retries,
                **params,
                # the bounds and the place of the file are not the user's to change
                **({k: v.format(max=limits.max_bytes) if isinstance(v, str) else v for k, v in SMALLER.items()}
                   if smaller else {}),
                "outtmpl": "video.%(ext)s",
                "max_filesize": limits.max_bytes,
                "noplaylist": True,
                "quiet": True,
                "no_warnings": True,
                "noprogress": True,
                "progress_hooks": [self.guard],
                "logger": QuietLogger(),
                "overwrites": True,
            }
            if options.get("cookiefile"):
                options["cookiefile"] = self._private_cookies(options["cookiefile"])
            if prefix:
                options["download_ranges"] = download_range_func(None, [(0, prefix)])
            self.instances[key] = yt_dlp.YoutubeDL(options)
        return self.instances[key]


def _download(ydls: _Ydls, url: str, directory: str, limits: FetchSettings, params: dict, prefix: float,
              ready: Callable[[], None] = lambda: None) -> dict:
    """Download in this process (the child's work) with its YoutubeDL of these options; a download
    over the size limit is tried once more in the smallest format that fits.

    ``params`` (cookies, proxy, ``--ytdlp`` ...) may change any yt-dlp option but the bounds and the
    output place; ``prefix`` > 0 fetches only the first ``prefix`` seconds; ``ready()`` is called when
    the request is about to leave (its pacing). Returns the answer line.
    """
    import yt_dlp

    for smaller in (False, True):
        ydl = ydls.get(limits, params, prefix, smaller)
        if not smaller:
            ready()
        ydl.params["outtmpl"]["default"] = os.path.join(directory, "video.%(ext)s")
        ydls.guard.started, ydls.guard.limits = time.monotonic(), limits
        try:
            info = ydl.extract_info(url, download=True) or {}
        except yt_dlp.utils.DownloadError as exc:
            if smaller or "size limit" not in str(exc):
                raise
            continue
        files = [f for f in os.listdir(directory) if f.startswith("video.") and not f.endswith(".part")]
        if files:
            duration = info.get("duration")
            return {"path": os.path.join(directory, files[0]), "duration": float(duration) if duration else None}
    # yt-dlp skips (without error) a file over max_filesize
    raise FetchError(f"nothing downloaded (larger than the size limit of {limits.max_bytes} bytes or no format)")


class _Downloader:
    """A child process running yt-dlp for one request at a time (JSON lines on stdin/stdout).

    It is started once and reused (importing yt-dlp costs more than a small download); at a time
    limit it is killed with everything it started, and the next request starts a fresh one.
    """

    RECYCLE_AFTER = 200  # requests, so that a long crawl never accumulates an extractor's leaks
    STARTUP_S = 120.0

    def __init__(self) -> None:
        self.served, self.ready, self.pending = 0, False, b""
        self.proc = subprocess.Popen([sys.executable, "-m", "videonet.curation.judge.fetch"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)

    def _line(self, seconds: float) -> bytes | None:
        """The child's next answer line, or None (child killed) if it takes longer than ``seconds``."""
        deadline, fd = time.monotonic() + seconds, self.proc.stdout.fileno()
        while not self.pending.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                self.kill()
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self.kill()
                raise FetchError(f"downloader exited (code {self.proc.poll()})")
            self.pending += chunk
        line, self.pending = self.pending, b""
        return line

    def fetch(self, url: str, directory: str, limits: FetchSettings, params: dict, prefix: float,
              before_send: Callable[[], None] | None = None) -> Fetched:
        if not self.ready:  # importing yt-dlp is not part of any download's time
            if self._line(self.STARTUP_S) is None:
                raise FetchError(f"downloader did not start within {self.STARTUP_S:g} s")
            self.ready = True
        self.served += 1
        request = {"url": url, "directory": directory, "limits": asdict(limits), "params": params, "prefix": prefix,
                   "secrets": _secrets(params), "handshake": before_send is not None}
        self._send(json.dumps(request))
        data = self._line(limits.max_seconds)
        if before_send is not None and data == b"set\n":
            # The child has its YoutubeDL ready: the request leaves the moment it is told "go", so neither
            # a cold start nor making a YoutubeDL eats into the session's pacing. (A child that failed
            # before that answered at once.)
            before_send()
            self._send("go")
            data = self._line(limits.max_seconds)
        if data is None:
            raise FetchError(f"download took longer than {limits.max_seconds:g} s (stopped)",
                             Failure(f"download took longer than {limits.max_seconds:g} s (stopped)", retriable=True))
        try:
            answer = json.loads(data)
        except ValueError:
            raise FetchError(f"downloader answered garbage: {data[:80]!r}") from None
        if "error" in answer:
            failure = Failure(**answer["error"])
            raise FetchError(failure.reason, failure)
        return Fetched(answer["path"], answer["duration"] if prefix else None, bool(prefix))

    def _send(self, line: str) -> None:
        try:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            self.kill()
            raise FetchError(f"downloader exited (code {self.proc.poll()})") from None

    def alive(self) -> bool:
        return self.proc.poll() is None and self.served < self.RECYCLE_AFTER

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: ffmpeg helpers go too
            except ProcessLookupError:
                pass
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


def _secrets(params: dict) -> list[str]:
    """What no message may show of these params: the proxy's credentials, the cookie values."""
    return [*proxy_secrets(params.get("proxy")), *cookie_values(params.get("cookiefile"))]


_idle: list[_Downloader] = []
_idle_lock = threading.Lock()


@atexit.register
def _close_idle() -> None:
    """At exit, end the idle children: end of input stops their loop; one that hangs is killed."""
    with _idle_lock:
        downloaders, _idle[:] = list(_idle), []
    for downloader in downloaders:
        try:
            downloader.proc.stdin.close()
            downloader.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        downloader.kill()


def _download_bounded(url: str, directory: str, limits: FetchSettings, params: dict, prefix: float,
                      before_send: Callable[[], None] | None = None) -> Fetched:
    """:func:`_download` in a child process that is killed at the wall-time limit."""
    with _idle_lock:
        downloader = _idle.pop() if _idle else None
    if downloader is not None and not downloader.alive():
        downloader.kill()
        downloader = None
    downloader = downloader or _Downloader()
    answered = False
    try:
        fetched = downloader.fetch(url, directory, limits, params, prefix, before_send)
        answered = True
        return fetched
    except FetchError:
        answered = True
        raise
    finally:  # reuse a child that answered; one interrupted mid-request would answer out of step
        if answered and downloader.proc.poll() is None:
            with _idle_lock:
                _idle.append(downloader)
        else:
            downloader.kill()


def _child() -> None:
    """``python -m videonet.curation.judge.fetch``: serve download requests, one JSON line in, one JSON line out.

    A request's ``secrets`` (its session's proxy credentials and cookie values) are redacted from the
    failure it answers: reasons end up in the audit, the report and logs.
    """
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything yt-dlp prints goes to stderr, never into the answers
    import yt_dlp  # before saying ready: the import is the slow part of starting

    ydls = _Ydls()
    answers.write("ready\n")
    answers.flush()
    def handshake() -> None:  # "set", then wait for the worker's "go" (it paces the session)
        answers.write("set\n")
        answers.flush()
        sys.stdin.readline()

    for line in sys.stdin:
        request = json.loads(line)
        os.environ["TMPDIR"] = tempfile.tempdir = request["directory"]  # yt-dlp's own temp files too
        try:
            answer = _download(ydls, request["url"], request["directory"], FetchSettings(**request["limits"]),
                               request["params"], request["prefix"], handshake if request["handshake"] else lambda: None)
        except FetchError as exc:
            answer = {"error": asdict(exc.failure)}
        except yt_dlp.utils.DownloadError as exc:  # classified here: only this process sees the HTTP error
            answer = {"error": asdict(failure_of(exc))}
        except Exception as exc:  # an extractor bug is this video's failure, not the run's
            answer = {"error": asdict(failure_of(RuntimeError(f"{type(exc).__name__}: {exc}")))}
        if "error" in answer:
            answer["error"]["reason"] = redact(answer["error"]["reason"], tuple(request["secrets"]))
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def _refusal(path: str, error: OSError) -> FetchError:
    """The audit reason of a local file that cannot be opened."""
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return FetchError(f"file not found: {path}")
    if error.errno == errno.ELOOP:
        return FetchError(f"a symlink appeared in the path after the catalog was read (not followed): {path}")
    return FetchError(f"file not readable: {path} ({error.strerror})")


def open_regular(path: str, max_bytes: int | None = None) -> int:
    """A read-only descriptor of the regular file at ``path``, opened without following any symlink.

    The catalog resolves each path and checks it against ``--catalog-root`` when it is loaded; a
    folder swapped for a symlink afterwards would lead the open elsewhere. So every component is
    opened relative to its parent with ``O_NOFOLLOW`` (a symlink anywhere is refused, never
    followed), the file is stat'ed before it is opened (a FIFO, a device or a directory is refused
    before an open that could block, and a file over ``max_bytes`` before a byte is read), and the
    descriptor is checked to be that very file. ``FetchError`` carries the audit reason.
    """
    parts = os.path.abspath(path).split(os.sep)[1:]
    directory_flags = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    parent = os.open(os.sep, directory_flags)
    try:
        for name in parts[:-1]:
            try:
                child = os.open(name, directory_flags, dir_fd=parent)
            except OSError as exc:
                if exc.errno == errno.ENOTDIR and stat.S_ISLNK(_lstat(name, parent)):
                    exc = OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                raise _refusal(path, exc) from None
            os.close(parent)
            parent = child
        try:
            before = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            raise _refusal(path, exc) from None
        if stat.S_ISLNK(before.st_mode):
            raise _refusal(path, OSError(errno.ELOOP, os.strerror(errno.ELOOP)))
        if not stat.S_ISREG(before.st_mode):  # a directory, FIFO, socket or device: never opened
            raise FetchError(f"not a regular file: {path}")
        if max_bytes is not None and before.st_size > max_bytes:
            raise FetchError(f"file of {before.st_size} bytes exceeds the size limit of {max_bytes} bytes: {path}")
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        except OSError as exc:
            raise _refusal(path, exc) from None
    finally:
        os.close(parent)
    after = os.fstat(fd)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) or after.st_size != before.st_size:
        os.close(fd)
        raise FetchError(f"file replaced while it was opened: {path}")
    return fd


def _lstat(name: str, parent: int) -> int:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
    except OSError:
        return 0


@contextmanager
def opened_local(path: str, max_bytes: int | None = None) -> Iterator[str]:
    """A name under which this process reads exactly the file :func:`open_regular` checked: the
    descriptor's ``/proc/self/fd`` entry (PyAV and torchcodec open files by name; that name cannot
    be swapped), or the path itself where there is no procfs."""
    fd = open_regular(path, max_bytes)
    try:
        name = f"/proc/self/fd/{fd}"
        yield name if os.path.exists(name) else path
    finally:
        os.close(fd)


FETCH_PREFIX = "videonet-fetch-"


def _host_prefix() -> str:
    """Temp dir names carry host and pid, so a sweep only touches dirs of dead processes on this host."""
    return f"{FETCH_PREFIX}{socket.gethostname()}-"


def sweep_stale_downloads(root: str | None = None) -> list[str]:
    """Remove this host's download dirs whose process is gone (killed before its ``finally`` ran).

    Why: ``local_video`` removes its directory on every way out of Python, but not when the
    process is killed outright; without this, each SIGKILLed worker would leave a partial video
    in the temp dir for good. Dirs of live processes, and of other hosts sharing the temp dir,
    are left alone.
    """
    root = root or tempfile.gettempdir()
    mine = _host_prefix()
    removed = []
    for name in os.listdir(root):
        pid = name[len(mine):].split("-", 1)[0] if name.startswith(mine) else ""
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed.append(name)
        except PermissionError:  # alive, owned by another user
            pass
    return removed


@contextmanager
def fetched_video(url: str | None, path: str | None, limits: FetchSettings = FetchSettings(),
                  site: Session | None = None, prefix: float = 0.0) -> Iterator[Fetched]:
    """Yield a local copy of the candidate's video; any temporary download or copy is deleted afterwards.

    A local catalog path is read in place, opened once without following a symlink and within the
    size limit (:func:`open_regular`); a remote one (``gs://``, ``s3://``, any scheme a Beam
    filesystem is registered for) is copied through Beam's filesystems; a URL goes through yt-dlp,
    paced and retried by ``site`` (default: one try, no rate limit), only its first ``prefix``
    seconds if ``prefix`` > 0.
    """
    if path and "://" not in path:
        with opened_local(path, limits.max_bytes) as name:
            yield Fetched(name)
        return
    if not path and not url:
        raise FetchError("candidate has neither url nor path")
    if not path and not url.lower().startswith(URL_SCHEMES):
        raise FetchError(f"url scheme not allowed (http/https only): {url[:80]}")
    site = site or session("download", ClientSettings(retry_attempts=1))
    directory = tempfile.mkdtemp(prefix=f"{_host_prefix()}{os.getpid()}-")
    try:
        yield Fetched(_copy_remote(path, directory, limits)) if path else \
            site.call(lambda: _download_bounded(url, directory, limits, site.params, prefix))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def fetch_into(url: str, target: str, limits: FetchSettings, site: Session, prefix: float = 0.0,
               before_send: Callable[[], None] | None = None) -> Fetched:
    """One request of ``site`` for ``url`` (its retries are the caller's), the file copied to ``target``
    (any Beam filesystem: the download stage and the judge may be different workers). ``before_send``
    runs once the downloader is ready, right before the request leaves (the session's pacing)."""
    from apache_beam.io.filesystems import FileSystems

    if not url.lower().startswith(URL_SCHEMES):
        raise FetchError(f"url scheme not allowed (http/https only): {url[:80]}")
    directory = tempfile.mkdtemp(prefix=f"{_host_prefix()}{os.getpid()}-")
    try:
        got = site.call(lambda: _download_bounded(url, directory, limits, site.params, prefix, before_send))
        with open(got.path, "rb") as src, FileSystems.create(target + ".tmp") as dst:
            shutil.copyfileobj(src, dst, 8 * 1024 * 1024)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    FileSystems.rename([target + ".tmp"], [target])
    return Fetched(target, got.duration, got.prefix)


@contextmanager
def local_video(url: str | None, path: str | None, limits: FetchSettings = FetchSettings(),
                site: Session | None = None) -> Iterator[str]:
    """The path of :func:`fetched_video` (the whole video)."""
    with fetched_video(url, path, limits, site) as fetched:
        yield fetched.path


def _copy_remote(path: str, directory: str, limits: FetchSettings) -> str:
    """Copy a remote catalog file into ``directory`` (PyAV reads local files), within the size limit."""
    from apache_beam.io.filesystems import FileSystems

    target = os.path.join(directory, "video" + os.path.splitext(path)[1])
    size = _remote_size(path)
    if size is not None and size > limits.max_bytes:  # refused before a byte is read
        raise FetchError(f"file of {size} bytes exceeds the size limit of {limits.max_bytes} bytes: {path}")
    try:
        with FileSystems.open(path, compression_type="uncompressed") as src, open(target, "wb") as dst:
            while block := src.read(8 * 1024 * 1024):
                dst.write(block)
                if dst.tell() > limits.max_bytes:
                    raise FetchError(f"file exceeded the size limit of {limits.max_bytes} bytes: {path}")
    except FetchError:
        raise
    except Exception as exc:  # Beam wraps each backend's "not found" differently
        raise FetchError(one_line(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")) from None
    return target


def _remote_size(path: str) -> int | None:
    """The size a remote filesystem lists for ``path``, or None where it does not say (the copy then
    stops at the limit); a missing file is the copy's to report."""
    from apache_beam.io.filesystems import FileSystems

    try:
        listed = FileSystems.match([path])[0].metadata_list
    except Exception:  # Beam raises its own error per backend for a missing file
        return None
    return listed[0].size_in_bytes if len(listed) == 1 else None


if __name__ == "__main__":
    _child()
