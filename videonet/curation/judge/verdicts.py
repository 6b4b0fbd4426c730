"""From clips to verdicts: fetch, probe, scan the first N frames, and decide per query class.

:func:`judge_clips` takes a batch of clip jobs (one video, the candidates that retrieved it). Each
clip gets one typed :data:`ClipResult` (fetch failed, undecodable, too short, or scanned); the scan
cache stores exactly that result, and :func:`verdict_rows` turns it into kept rows (metadata) and
audit rows. The judge only decides: each clip comes back as a :class:`Judged` that says what to put
on disk (the file to stage for a kept download, the result to cache, the frames behind the verdicts,
the download to drop), and the write stage (:mod:`videonet.curation.write.judged`) puts it there.
Scans are cached under ``_work/scans`` and kept downloads staged under ``_work/staging``, so a rerun
after a kill does not fetch or classify a clip again.
"""

from __future__ import annotations

import json
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence, Union

from apache_beam.io.filesystems import FileSystems

from videonet.curation.candidates import duration_verdict
from videonet.curation.judge import JudgeSettings
from videonet.curation.judge.classifier import Classifier
from videonet.curation.client import Session
from videonet.curation.judge.fetch import FetchError, Fetched, FetchSettings, fetched_video
from videonet.curation.judge.frames import DecodeError, check_complete, probe
from videonet.curation.judge.scan import Scan, most_frequent, scan_clips
from videonet.curation.vocabulary.classes import class_name
from videonet.curation.rundir import (
    COMPANIONS, DECODE_ERROR, DOWNLOAD_DEFERRED, DOWNLOAD_ERROR, DOWNLOAD_RETRIABLE, EXTRA_LABELS, GAVE_UP, OTHER_CLASS, REJECTED,
    TOO_SHORT, audit_row, clip_key, kept_row,
)
from videonet.curation.rundir import cache_path, staging_path


@dataclass(frozen=True)
class Decision:
    """The keep rule's verdict for one (clip, class) pair."""

    kept: bool
    matched_frames: int  # frames whose top-1 is the class, among those classified
    first_match: int  # index of the first such frame, -1 if none


def keep_decision(top1: Sequence[int], class_index: int) -> Decision:
    """Keep the clip iff ``class_index`` is the top-1 prediction on at least one frame."""
    matches = [i for i, label in enumerate(top1) if int(label) == class_index]
    return Decision(bool(matches), len(matches), matches[0] if matches else -1)


def winning_class(top1: Sequence[int], kept: Sequence[int]) -> int:
    """One class per video: of the classes a clip is kept for, the one top-1 on the most frames
    (ties: the lower class index), so the trainer never meets the same video under two labels."""
    return min(kept, key=lambda c: (-sum(1 for label in top1 if label == c), c))


# One typed result of judging a clip, a variant per outcome.

@dataclass(frozen=True)
class FetchFailed:
    """The video could not be fetched (never cached); ``retriable``: asking again may cure it (a rerun
    does), else the failure is permanent (a rerun leaves it audited)."""

    reason: str
    retriable: bool = False
    deferred: bool = False  # not asked: every session that could was parked (not a try)

    @classmethod
    def of(cls, exc: FetchError) -> "FetchFailed":
        return cls(str(exc), exc.failure.retriable)

    def status(self, tries: int, retry_runs: int) -> tuple[str, str]:
        """The audit status and reason for a candidate that failed retriably in ``tries`` earlier runs:
        the ``retry_runs``-th retriable failure gives up (with the last reason)."""
        if self.deferred:
            return DOWNLOAD_DEFERRED, self.reason
        if not self.retriable:
            return DOWNLOAD_ERROR, self.reason
        if tries + 1 >= retry_runs:
            return GAVE_UP, f"gave up after {tries + 1} runs failing retriably; last: {self.reason}"
        return DOWNLOAD_RETRIABLE, self.reason


@dataclass(frozen=True)
class Undecodable:
    """The file is not a decodable video (or decoding failed or timed out mid-scan)."""

    reason: str
    wanted: tuple[int, ...]
    duration: float | None = None
    fps: float | None = None


@dataclass(frozen=True)
class TooShort:
    """The probed duration is below ``--min-duration``."""

    duration: float
    fps: float | None
    wanted: tuple[int, ...]


@dataclass(frozen=True)
class Scanned:
    """The first frames were classified: per-frame top-1 labels and scores."""

    duration: float | None
    fps: float | None
    wanted: tuple[int, ...]  # the classes this scan was run for (early exit stops once all are top-1)
    top1: tuple[int, ...]
    scores: tuple[float, ...]
    decoded: int
    exhausted: bool  # the clip ran out of frames before N

    def serves(self, wanted: set[int], frames: int) -> bool:
        """Whether this (cached) scan decides ``wanted``: it saw every frame or was run for them all."""
        return self.exhausted or len(self.top1) >= frames or wanted <= set(self.wanted)


ClipResult = Union[FetchFailed, Undecodable, TooShort, Scanned]
_KINDS = {cls.__name__: cls for cls in (Undecodable, TooShort, Scanned)}


def encode_result(result: ClipResult) -> bytes:
    """The scan cache's file format: the result's fields plus its kind."""
    return json.dumps({"kind": type(result).__name__, **asdict(result)}).encode()


def decode_result(data: bytes) -> ClipResult | None:
    """A cached result, or None for a file of another format (an older videonet) or a damaged one
    (the cache is safe to lose: the clip is scanned again)."""
    try:
        fields = json.loads(data)
    except ValueError:  # UnicodeDecodeError included
        return None
    kind = _KINDS.get(fields.pop("kind", None)) if isinstance(fields, dict) else None
    if kind is None:
        return None
    try:
        return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    except TypeError:
        return None


def _load_cache(path: str, wanted: set[int], frames: int) -> ClipResult | None:
    """A cached result serves if the clip failed, was too short, or its scan decides every wanted class."""
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as fh:
        cached = decode_result(fh.read())
    if isinstance(cached, Scanned) and not cached.serves(wanted, frames):
        return None
    return cached


def usable_cache(out: str, identity: str, candidates: list[dict], frames: int) -> ClipResult | None:
    """The cached result that decides this clip, or None: then it must be fetched (a URL clip kept by
    a cached scan whose staged download is gone is fetched again)."""
    wanted = {c["class_index"] for c in candidates}
    cached = _load_cache(cache_path(out, identity), wanted, frames)
    unstaged = (_is_download(candidates) and isinstance(cached, Scanned) and set(cached.top1) & wanted
                and not FileSystems.exists(staging_path(out, identity)))
    return None if unstaged else cached


@dataclass(frozen=True)
class ClipJob:
    """One video to judge and the candidates that retrieved it; ``fetched``: what the download stage
    got for a URL clip (its file in the run directory, or why not), None where the judge reads the
    video itself (a catalog path, or a clip its scan cache decides)."""

    identity: str
    candidates: list[dict]
    fetched: Fetched | FetchFailed | None = None


def verdict_rows(candidates: list[dict], result: ClipResult, staged: str | None, min_duration: float,
                 multi_label: bool = False, retry_runs: int = 3) -> list[dict]:
    """Apply the keep rule to each candidate of one clip; a clip passing several classes is kept once.
    A candidate's ``tries`` (set by the resume join) counts the runs it already failed retriably in."""
    if isinstance(result, FetchFailed):
        return [audit_row(c, *result.status(c.get("tries") or 0, retry_runs)) for c in candidates]
    if isinstance(result, Undecodable):
        return [audit_row(c, DECODE_ERROR, result.reason) for c in candidates]
    if isinstance(result, TooShort):
        return [audit_row({**c, "duration": result.duration}, TOO_SHORT,
                          f"duration {result.duration:.2f} s < {min_duration:g} s (probed)") for c in candidates]
    rows, passed = [], []
    classified = len(result.top1)
    for c in candidates:
        c = {**c, "duration": c.get("duration") if c.get("duration") is not None else result.duration}
        decision = keep_decision(result.top1, c["class_index"])
        if decision.kept:
            best = max(s for label, s in zip(result.top1, result.scores) if label == c["class_index"])
            passed.append(kept_row(c, fps=result.fps, frames_decoded=result.decoded,
                                   frames_classified=classified, matched_frames=decision.matched_frames,
                                   first_match=decision.first_match, top1_score=best,
                                   path=staged or c.get("path")))
        else:
            usual = most_frequent(result.top1)
            rows.append(audit_row(c, REJECTED, f"{c['name']} ({c['class_index']}) never top-1 in {classified} "
                                               f"frames; most frequent top-1: {class_name(usual)} ({usual})",
                                  classified))
    if not passed:
        return rows
    winner = winning_class(result.top1, [r["class_index"] for r in passed])
    kept = next(r for r in passed if r["class_index"] == winner)
    others = [r for r in passed if r is not kept]
    kept["labels"] = [winner] + ([r["class_index"] for r in others] if multi_label else [])
    if multi_label:
        kept[EXTRA_LABELS] = others
    else:
        rows += [audit_row(r, OTHER_CLASS, f"video kept under {kept['wnid']} ({kept['name']}, top-1 on "
                                           f"{kept['matched_frames']} frames; {r['name']} on {r['matched_frames']})",
                           classified) for r in others]
    return [kept, *rows]


def with_companions(rows: list[dict]) -> list[dict]:
    """A clip's verdict rows as the pipeline routes them: a kept clip's row carries the audit rows of
    its other candidates (:data:`~videonet.curation.rundir.COMPANIONS`), which its shard commit writes."""
    kept = [r for r in rows if "status" not in r]
    if not kept:
        return rows
    (clip,) = kept  # one clip is kept once (--multi-label extras ride in EXTRA_LABELS)
    return [{**clip, COMPANIONS: [r for r in rows if "status" in r]}]


def _scanned(probed: tuple[float | None, float | None, tuple[int, ...]], scan: Scan) -> ClipResult:
    duration, fps, wanted = probed
    if scan.error is not None:
        return Undecodable(scan.error, wanted, duration, fps)
    return Scanned(duration, fps, wanted, tuple(scan.top1), tuple(scan.scores), scan.decoded, scan.exhausted)


def _is_download(candidates: list[dict]) -> bool:
    """A URL candidate: its file exists only while judged, so a kept one is staged for the shard writer."""
    return not candidates[0].get("path")


def _whole_video(candidate: dict, judged: Fetched, fetch: FetchSettings, site: Session | None,
                 files: ExitStack) -> str | FetchFailed:
    """The file to stage for a kept download: the file judged or, when a prefix was judged, the whole
    video (fetched now, only for a kept clip, open until ``files`` closes); a failure to fetch it is
    the clip's result."""
    if not judged.prefix:
        return judged.path
    try:
        return files.enter_context(fetched_video(candidate["url"], None, fetch, site)).path
    except FetchError as exc:
        return FetchFailed.of(exc)


@dataclass(frozen=True)
class Thumb:
    """The frame behind a verdict, for the report: a small JPEG and its facts."""

    key: str  # the candidate's clip key (a kept clip's shard key)
    jpeg: bytes
    label: int  # the frame's top-1 class
    frame: int  # its index among the classified frames
    score: float


def _label_behind(row: dict, scan: Scan) -> int | None:
    """The class whose frame explains the row's verdict: its own for a kept row (no status yet:
    it becomes metadata), the most frequent top-1 for a rejected one; None for other outcomes."""
    if "status" not in row:
        return int(row["class_index"])
    if row["status"] == REJECTED and scan.top1:
        return most_frequent(scan.top1)
    return None


def thumbs_of(rows: list[dict], scan: Scan) -> tuple[Thumb, ...]:
    """The frame behind each kept or rejected row judged by ``scan`` (the scan kept the first frame of
    every top-1 label it saw, so no clip is decoded twice)."""
    thumbs = []
    for row in rows:
        label = _label_behind(row, scan)
        if label is None or label not in scan.firsts:
            continue
        frame = scan.top1.index(label)
        thumbs.append(Thumb(clip_key(row), scan.firsts[label], label, frame, round(float(scan.scores[frame]), 4)))
    return tuple(thumbs)


@dataclass(frozen=True)
class Judged:
    """One clip judged: its verdict rows, and what the write stage puts on disk for it."""

    identity: str
    rows: list[dict]  # kept rows (metadata to be) and audit rows
    cache: bytes | None  # the result for the scan cache (:func:`encode_result`); None: a failed fetch, never cached
    stage: str | None = None  # a local file to stage as this kept download (open until the batch's files close)
    thumbs: tuple[Thumb, ...] = ()
    drop: str | None = None  # the download stage's file, judged and no longer needed


@contextmanager
def _opened(job: ClipJob, fetch: FetchSettings, site: Session | None) -> Iterator[Fetched]:
    """The job's video as a local file: what the download stage fetched, else fetched here."""
    first = job.candidates[0]
    if isinstance(job.fetched, Fetched):
        with fetched_video(None, job.fetched.path, fetch) as local:
            yield Fetched(local.path, job.fetched.duration, job.fetched.prefix)
        return
    prefix = fetch.judge_prefix if _is_download(job.candidates) else 0.0
    with fetched_video(first.get("url"), first.get("path"), fetch, site, prefix) as got:
        yield got


def _spent(job: ClipJob, rows: list[dict]) -> str | None:
    """The download stage's file once judged, unless it is the staged copy of a kept clip."""
    if isinstance(job.fetched, Fetched) and (job.fetched.prefix or all("status" in r for r in rows)):
        return job.fetched.path
    return None


def judge_clips(jobs: list[ClipJob], classifier: Classifier, settings: JudgeSettings, fetch: FetchSettings,
                min_duration: float, out: str, files: ExitStack, site: Session | None = None,
                retry_runs: int = 3) -> list[Judged]:
    """Judge a batch of clip jobs: one :class:`Judged` per job, in order. ``out`` is the run dir (its
    scan cache is read here), ``files`` holds the local files fetched for the batch open until the
    write stage is done with them, ``site`` paces and retries the downloads the judge makes itself
    (and tallies their requests)."""
    results: dict[int, ClipResult] = {}
    to_stage: dict[int, str] = {}  # judged and kept downloads: the local file to stage
    unstaged: dict[int, FetchFailed] = {}  # judged and kept, but the whole video could not be fetched
    probed: dict[int, tuple[float | None, float | None, tuple[int, ...]]] = {}
    to_scan: list[tuple[int, Fetched, set[int]]] = []
    for i, job in enumerate(jobs):
        wanted = {c["class_index"] for c in job.candidates}
        cached = usable_cache(out, job.identity, job.candidates, settings.frames)
        if cached is not None:
            results[i] = cached
            continue
        if isinstance(job.fetched, FetchFailed):
            results[i] = job.fetched
            continue
        key = tuple(sorted(wanted))
        try:
            got = files.enter_context(_opened(job, fetch, site))
            info = probe(got.path)
        except FetchError as exc:
            results[i] = FetchFailed.of(exc)
            continue
        except DecodeError as exc:
            results[i] = Undecodable(str(exc), key)
            continue
        duration = got.duration or info.duration  # a prefix's own duration is the prefix's
        if duration_verdict(duration, min_duration) is False:
            results[i] = TooShort(duration, info.fps, key)
            continue
        try:
            check_complete(got.path)
        except DecodeError as exc:
            results[i] = Undecodable(str(exc), key, duration, info.fps)
            continue
        probed[i] = (duration, info.fps, key)
        to_scan.append((i, got, wanted))
    scans = scan_clips(classifier, [(got.path, wanted) for _, got, wanted in to_scan], settings.frames,
                       settings.chunk, decode_timeout_s=settings.decode_timeout,
                       decoder=settings.decoder) if to_scan else []
    fresh = {}  # a cached clip keeps its first thumbnails
    for (i, got, wanted), scan in zip(to_scan, scans):
        results[i], fresh[i] = _scanned(probed[i], scan), scan
        job = jobs[i]
        staged_already = isinstance(job.fetched, Fetched) and not job.fetched.prefix
        if isinstance(results[i], Scanned) and wanted & set(scan.top1) and _is_download(job.candidates) \
                and not staged_already:
            whole = _whole_video(job.candidates[0], got, fetch, site, files)
            if isinstance(whole, FetchFailed):
                unstaged[i] = whole
            else:
                to_stage[i] = whole
    judged = []
    for i, job in enumerate(jobs):
        result = results[i]
        staged = staging_path(out, job.identity) if _is_download(job.candidates) else None
        rows = verdict_rows(job.candidates, unstaged.get(i, result), staged, min_duration, settings.multi_label,
                            retry_runs)
        cache = None if isinstance(result, FetchFailed) else encode_result(result)
        judged.append(Judged(job.identity, with_companions(rows), cache, to_stage.get(i),
                             thumbs_of(rows, fresh[i]) if i in fresh else (), _spent(job, rows)))
    return judged
