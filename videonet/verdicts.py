"""From clips to verdicts: fetch, probe, scan the first N frames, and decide per query class.

:func:`judge_clips` takes a batch of clip jobs (one video, the candidates that retrieved it) and
returns rows: kept rows (metadata) and audit rows for every other outcome. Scans are cached under
``_work/scans`` and kept downloads staged under ``_work/staging``, so a rerun after a kill does
not fetch or classify a clip again.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from videonet.classifier import Classifier
from videonet.fetch import FetchError, FetchLimits, local_video
from videonet.filter import FRAMES, Scan, scan_clips
from videonet.frames import DecodeError, check_complete, probe
from videonet.outputs import WORK, join, write_atomic
from videonet.records import DECODE_ERROR, DOWNLOAD_ERROR, REJECTED, TOO_SHORT, audit_row, kept_row
from videonet.rules import duration_verdict, keep_decision
from videonet.vocab import class_name


@dataclass(frozen=True)
class FilterSettings:
    out: str
    frames: int = FRAMES
    chunk: int = 25
    min_duration: float = 10.0
    decode_timeout_s: float = 120.0
    limits: FetchLimits = FetchLimits()


def _digest(identity: str) -> str:
    return hashlib.sha1(identity.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def cache_path(settings: FilterSettings, identity: str) -> str:
    return join(settings.out, WORK, "scans", f"{_digest(identity)}.json")


def staging_path(settings: FilterSettings, identity: str) -> str:
    return join(settings.out, WORK, "staging", f"{_digest(identity)}.mp4")


def _load_cache(path: str, wanted: set[int], frames: int) -> dict | None:
    """A cached scan serves if it failed, covered every wanted class, or saw all frames."""
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as fh:
        cached = json.loads(fh.read())
    complete = cached.get("error") or cached.get("too_short") or cached["exhausted"] or len(cached["top1"]) >= frames
    return cached if complete or wanted <= set(cached["wanted"]) else None


def _verdict_rows(candidates: list[dict], result: dict, staged: str | None, settings: FilterSettings) -> list[dict]:
    """Apply the keep rule to each candidate of one clip."""
    if result.get("fetch_error"):
        return [audit_row(c, DOWNLOAD_ERROR, result["fetch_error"]) for c in candidates]
    if result.get("error"):
        return [audit_row(c, DECODE_ERROR, result["error"]) for c in candidates]
    duration = result.get("duration")
    if result.get("too_short"):
        return [audit_row({**c, "duration": duration}, TOO_SHORT,
                          f"duration {duration:.2f} s < {settings.min_duration:g} s (probed)") for c in candidates]
    rows = []
    top1, scores, classified = result["top1"], result["scores"], len(result["top1"])
    for c in candidates:
        c = {**c, "duration": c.get("duration") if c.get("duration") is not None else duration}
        decision = keep_decision(top1, c["class_index"])
        if decision.kept:
            best = max(s for label, s in zip(top1, scores) if label == c["class_index"])
            rows.append(kept_row(c, fps=result.get("fps"), frames_decoded=result["decoded"],
                                 frames_classified=classified, matched_frames=decision.matched_frames,
                                 first_match=decision.first_match, top1_score=best,
                                 path=staged or c.get("path")))
        else:
            usual = max(set(top1), key=top1.count)
            rows.append(audit_row(c, REJECTED, f"{c['name']} ({c['class_index']}) never top-1 in {classified} "
                                               f"frames; most frequent top-1: {class_name(usual)} ({usual})",
                                  classified))
    return rows


def judge_clips(jobs: list[tuple[str, list[dict]]], classifier: Classifier, settings: FilterSettings) -> list[dict]:
    """Verdict rows for a batch of ``(video identity, candidates)`` clip jobs."""
    results: dict[int, dict] = {}
    to_scan: list[tuple[int, str, set[int]]] = []
    with ExitStack() as stack:
        for i, (identity, candidates) in enumerate(jobs):
            wanted = {c["class_index"] for c in candidates}
            cached = _load_cache(cache_path(settings, identity), wanted, settings.frames)
            downloaded = not candidates[0].get("path")
            if cached is not None and not (downloaded and set(cached.get("top1", ())) & wanted
                                           and not FileSystems.exists(staging_path(settings, identity))):
                results[i] = cached
                continue
            first = candidates[0]
            try:
                local = stack.enter_context(local_video(first.get("url"), first.get("path"), settings.limits))
                info = probe(local)
            except FetchError as exc:
                results[i] = {"fetch_error": str(exc)}
                continue
            except DecodeError as exc:
                results[i] = {"error": str(exc), "wanted": sorted(wanted)}
                continue
            result = {"duration": info.duration, "fps": info.fps, "wanted": sorted(wanted)}
            if duration_verdict(info.duration, settings.min_duration) is False:
                results[i] = {**result, "too_short": True}
                continue
            try:
                check_complete(local)
            except DecodeError as exc:
                results[i] = {**result, "error": str(exc)}
                continue
            results[i] = result
            to_scan.append((i, local, wanted))
        scans = scan_clips(classifier, [(local, wanted) for _, local, wanted in to_scan], settings.frames,
                           settings.chunk, decode_timeout_s=settings.decode_timeout_s) if to_scan else []
        staged: dict[int, str] = {}
        for (i, local, wanted), scan in zip(to_scan, scans):
            results[i].update(_scan_fields(scan))
            kept_any = scan.error is None and wanted & set(scan.top1)
            if kept_any and not jobs[i][1][0].get("path"):  # a download: stage it for the shard writer
                staged[i] = staging_path(settings, jobs[i][0])
                with open(local, "rb") as fh:
                    write_atomic(staged[i], fh.read())
    rows = []
    for i, (identity, candidates) in enumerate(jobs):
        result = results[i]
        if "fetch_error" not in result:
            write_atomic(cache_path(settings, identity), json.dumps(result).encode())
        stage = staged.get(i) or (staging_path(settings, identity) if not candidates[0].get("path") else None)
        rows += _verdict_rows(candidates, result, stage, settings)
    return rows


def _scan_fields(scan: Scan) -> dict:
    return {"top1": scan.top1, "scores": scan.scores, "error": scan.error, "decoded": scan.decoded,
            "exhausted": scan.exhausted}
