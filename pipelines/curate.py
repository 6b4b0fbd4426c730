"""The VideoNet curation pipeline on Apache Beam: the stages of ``videonet.curation``, in the order data flows.

vocabulary -> search + candidates (per class, page by page until the class is full: title match,
dedup + cap) -> candidates (duration) -> judge (fetch, frames, classifier, verdicts) -> write
(shards, metadata, audit, each class's search facts). The rules live in the stage modules; the
DoFns here only route rows. Rows that carry a ``status`` are audit rows and leave the main flow
through the ``audit`` output. Resuming is a join with the audit already on disk: a (class, video)
that a previous run audited is neither judged nor audited again, unless its row is retriable (a
download or search that failed with a 429, a 5xx, a timeout...: a rerun tries it again). What the
requests cost (a ``Tally`` per class searched and per batch judged) goes to ``requests/<run_id>.parquet``.
"""

from __future__ import annotations

import hashlib
import random
import time
import zlib
from contextlib import ExitStack
from typing import Iterable

import apache_beam as beam
from apache_beam.runners.runner import PipelineResult
from apache_beam.utils.shared import Shared

from videonet.curation.candidates import (
    INFLECTED, CandidateSettings, ClassCandidates, check_duration, kept_elsewhere, video_identity,
)
from videonet.curation.client import (
    CircuitOpen, ClientSettings, Session, SessionLedger, SiteSession, Tally, backoff_seconds, breaker_trips,
    home_session, jittered, merge_rows, pacer, read_sessions, session, ydl_params,
)
from videonet.curation.rundir import REQUESTS_SCHEMA
from videonet.curation.judge.classifier import ClassifierSettings
from videonet.curation.judge.fetch import FetchError, fetch_into, sweep_stale_downloads
from videonet.curation.judge.verdicts import ClipJob, FetchFailed, _is_download, judge_clips, usable_cache
from videonet.curation.rundir import fetched_path
from videonet.curation.settings import CurateSettings, RunState
from videonet.curation.rundir import SEARCH_SCHEMA
from videonet.curation.search import Source, search_class
from videonet.curation.vocabulary.classes import ImageNetClass
from videonet.curation.write.judged import write_judged
from videonet.curation.rundir import (
    AUDIT_SCHEMA, COMPANIONS, DOWNLOAD_RETRIABLE, INVALID_ROW, KEPT, audit_row, candidate_key, settles,
)
from videonet.curation.rundir import AUDIT, METADATA, REQUESTS, SEARCH, join
from videonet.pipelines.counters import count_drop, count_kept, count_requests
from videonet.pipelines.runners import job_service, new_pipeline
from videonet.curation.rundir import sessions_dir

AUDIT_TAG = "audit"
SEARCH_TAG = "search"
REQUESTS_TAG = "requests"
DEFERRED_TAG = "deferred"
ONE_TRY = ClientSettings(retry_attempts=1)  # the download stage retries itself, per session


def route(rows: Iterable[dict]):
    """Send audit rows (with a status) to the audit output, candidates to the main one."""
    for row in rows:
        yield beam.pvalue.TaggedOutput(AUDIT_TAG, row) if "status" in row else row


class SearchTitles(beam.DoFn):
    """Search one class until it is full; title match, dedup and cap happen here too, because the
    stop rule counts the class's unique title-matched videos. Emits candidates, audit rows, and the
    class's search facts (why it stopped, how many requests) to the ``search`` output, and what its
    requests cost to the ``requests`` output."""

    def __init__(self, source: Source, page_size: int, rules: CandidateSettings, client: ClientSettings, run_id: str):
        self.source, self.page_size, self.rules, self.client, self.run_id = source, page_size, rules, client, run_id

    def process(self, cls: ImageNetClass):
        candidates = ClassCandidates(cls.terms, self.rules.per_class, self.rules.title_match == INFLECTED)
        site = session("search", self.client)
        rows, facts = search_class(cls, self.source, candidates, self.page_size, self.run_id, site)
        yield from route(rows)
        yield beam.pvalue.TaggedOutput(SEARCH_TAG, facts)
        yield beam.pvalue.TaggedOutput(REQUESTS_TAG, site.tally.row(self.run_id))


def acquire_classifier(shared: Shared, spec: ClassifierSettings):
    """The one classifier of this worker process (loaded once, shared by all DoFn instances)."""
    return shared.acquire(spec.load, tag=repr(spec))


class JudgeClips(beam.DoFn):
    """Judge a batch of clips with one model shared per worker process, then write what the judge decided."""

    def __init__(self, settings: CurateSettings, out: str, run_id: str, shared: Shared):
        self.settings, self.out, self.run_id, self.shared = settings, out, run_id, shared

    def setup(self):
        sweep_stale_downloads()  # what a killed worker on this machine left in the temp dir
        self.classifier = acquire_classifier(self.shared, self.settings.classifier)
        self.bar = None
        if self.settings.runner.progress and self.settings.runner.local:
            from tqdm import tqdm

            self.bar = tqdm(desc="clips judged", unit="clip", leave=False)

    def process(self, jobs: list[ClipJob]):
        s = self.settings
        site = session("download", s.client)
        with ExitStack() as files:  # the batch's fetched files, open until their verdicts are written
            judged = judge_clips(jobs, self.classifier, s.judge, s.fetch, s.candidates.min_duration, self.out, files,
                                 site, s.client.retry_runs)
            rows = [row for clip in judged for row in write_judged(self.out, clip)]
        yield from route(rows)
        if site.tally.requests:
            yield beam.pvalue.TaggedOutput(REQUESTS_TAG, site.tally.row(self.run_id))
        if self.bar is not None:
            self.bar.update(len(jobs))

    def teardown(self):
        if self.bar is not None:
            self.bar.close()


class FetchBySession(beam.DoFn):
    """Download URL clips, keyed by the session that fetches them, into the run directory.

    A session's rate must hold across the whole fleet, on any runner: Beam runs a stateful DoFn's
    elements of one key one at a time, with state that follows the key from worker to worker, so the
    time of the session's next free slot lives in that state (gaps jittered, never shorter than the
    session's interval) and two workers can never ask with the same session at once. A retriable
    failure is retried on the session's clock (``Retry-After`` as said, else backoff); a rate-limit
    signal that names no wait parks the session for ``--cooldown`` in the run directory's ledger, and
    its videos go on to the next pass, keyed to another session; in the last pass they are deferred
    (audited ``download_deferred``) or, with ``--wait-parked``, wait. When most of a session's last
    downloads fail alike for a set-up reason the breaker stops the run (:class:`CircuitOpen`).
    """

    NEXT_FREE = beam.transforms.userstate.ReadModifyWriteStateSpec("next_free", beam.coders.FloatCoder())
    RECENT = beam.transforms.userstate.ReadModifyWriteStateSpec("recent", beam.coders.PickleCoder())

    def __init__(self, settings: CurateSettings, out: str, run_id: str, sessions: tuple[SiteSession, ...],
                 last: bool):
        self.settings, self.out, self.run_id, self.last = settings, out, run_id, last
        self.sessions = {s.name: s for s in sessions}

    def setup(self):
        sweep_stale_downloads()
        self.ledger = SessionLedger(sessions_dir(self.out))
        self.draw = random.Random().random

    def _remember(self, recent, kind: str | None) -> list[str | None]:
        window = self.settings.client.breaker_window
        seen = ((recent.read() or []) + [kind])[-window:] if window else []
        recent.write(seen)
        return seen

    def process(self, element: tuple[str, ClipJob], next_free=beam.DoFn.StateParam(NEXT_FREE),
                recent=beam.DoFn.StateParam(RECENT)):
        name, job = element
        c, identity = self.settings.client, self.sessions[name]
        site = Session(pacer("download", ONE_TRY), ydl_params(c, identity), Tally("download"))
        prefix = self.settings.fetch.judge_prefix
        attempt = 0
        while True:
            parked = self.ledger.parked().get(name)
            if parked is not None and not (self.last and c.wait_parked):
                if not self.last:
                    yield beam.pvalue.TaggedOutput(DEFERRED_TAG, job)
                else:
                    until = time.strftime("%H:%M:%S UTC", time.gmtime(parked.until))
                    yield ClipJob(job.identity, job.candidates, FetchFailed(
                        f"not asked: session {name} rate-limited ({parked.kind}), parked until {until}", True, True))
                break
            earliest = max(next_free.read() or 0.0, parked.until if parked else 0.0)

            def take_slot() -> None:  # the session's next slot, waited for when the request is ready to leave
                now, gap = time.time(), jittered(identity.interval, c.jitter, self.draw())
                slot = self.ledger.reserve(name, earliest, gap)
                next_free.write(slot + gap)
                if slot > now:
                    time.sleep(slot - now)
                    site.tally.waited_s += slot - now

            try:
                fetched = fetch_into(job.candidates[0]["url"], fetched_path(self.out, job.identity, bool(prefix)),
                                     self.settings.fetch, site, prefix, take_slot)
            except FetchError as exc:
                failure = exc.failure
                seen = self._remember(recent, failure.kind)
                tripped = breaker_trips(seen, c.breaker_window, c.breaker_share) if c.breaker_window else None
                if tripped is not None:
                    raise CircuitOpen.of(failure, seen.count(tripped), c.breaker_window, name)
                attempt += 1
                if failure.rate_limited and (failure.retry_after is None or failure.retry_after > c.retry_max_wait):
                    self.ledger.park(name, time.time() + (failure.retry_after or c.cooldown), failure.kind)
                    if attempt < c.retry_attempts:
                        continue
                elif failure.retriable and attempt < c.retry_attempts:
                    wait = backoff_seconds(attempt - 1, c.retry_backoff, c.retry_max_wait, failure.retry_after)
                    next_free.write(max(next_free.read() or 0.0, time.time() + wait))
                    self.ledger.hold(name, time.time() + wait)
                    site.tally.retries += 1
                    continue
                yield ClipJob(job.identity, job.candidates, FetchFailed.of(exc))
            else:
                self._remember(recent, None)
                yield ClipJob(job.identity, job.candidates, fetched)
            break
        yield beam.pvalue.TaggedOutput(REQUESTS_TAG, site.tally.row(self.run_id))


class KeyBySession(beam.DoFn):
    """Key each clip by the session to fetch it: its home session on the first pass, the next free
    ones after (the ledger says which are parked; read at most every few seconds per worker)."""

    def __init__(self, sessions: tuple[SiteSession, ...], ledger_dir: str, turn: int):
        self.sessions, self.ledger_dir, self.turn = sessions, ledger_dir, turn

    def setup(self):
        self.ledger = SessionLedger(self.ledger_dir)

    def process(self, job: ClipJob):
        yield home_session(job.identity, self.sessions, frozenset(self.ledger.parked()), self.turn).name, job


class FetchPass(beam.PTransform):
    """One pass of the download stage: each clip keyed to a session not parked, then fetched; what a
    parked session could not fetch is the ``deferred`` output, for the next pass."""

    def __init__(self, settings: CurateSettings, out: str, run_id: str, sessions: tuple[SiteSession, ...],
                 turn: int, last: bool):
        super().__init__()
        self.settings, self.out, self.run_id, self.sessions, self.turn, self.last = \
            settings, out, run_id, sessions, turn, last

    def expand(self, jobs):
        return (jobs
                | "BySession" >> beam.ParDo(KeyBySession(self.sessions, sessions_dir(self.out), self.turn))
                .with_output_types(beam.typehints.KV[str, ClipJob])
                | "Fetch" >> beam.ParDo(FetchBySession(self.settings, self.out, self.run_id, self.sessions, self.last))
                .with_outputs(DEFERRED_TAG, REQUESTS_TAG, main="fetched"))


def needs_fetch(job: ClipJob, out: str, frames: int) -> bool:
    """A URL clip that its scan cache does not decide: the download stage fetches it."""
    return _is_download(job.candidates) and usable_cache(out, job.identity, job.candidates, frames) is None


class WriteShard(beam.DoFn):
    """Commit one batch of kept clips as a shard part (tar + metadata + kept audit rows)."""

    def __init__(self, state: RunState, trainer_copy: bool = False):
        self.state, self.trainer_copy = state, trainer_copy

    def process(self, batch):
        from videonet.curation.write.shards import commit_part

        _, rows = batch
        keys = "|".join(sorted(r["key"] for r in rows))
        part = f"{self.state.run_id}-{hashlib.sha1(keys.encode()).hexdigest()[:12]}"
        commit_part(self.state.out, part, list(rows), self.trainer_copy)
        count_kept(len(rows))
        for row in rows:
            for companion in row.get(COMPANIONS, ()):
                count_drop(companion)
        yield part


def location(row: dict) -> int:
    """Where a candidate's video is (its URL, else its path), as a number the resume join carries for
    millions of audit rows: a verdict speaks for that video only."""
    return zlib.crc32(str(row.get("url") or row.get("path") or "").encode("utf-8", "surrogateescape"))


def unsettled(audited: list[tuple[str, int]], rows: list[dict], tries: bool) -> list[dict]:
    """The rows of a candidate whose audit history (``(status, location)`` pairs) does not settle it;
    with ``tries``, each carries the number of runs it already failed retriably in (``--retry-runs``
    caps them). A verdict settles only the video it was given at: a catalog row whose path or URL
    changed is judged again, unless it was kept (its clip is in a shard already: replacing kept clips
    is a new run directory's job)."""
    if any(status == KEPT for status, _ in audited):
        return []
    open_rows = []
    for row in rows:
        here = [status for status, at in audited if at == location(row)]
        if not any(settles(s) for s in here):
            open_rows.append({**row, "tries": sum(s == DOWNLOAD_RETRIABLE for s in here)} if tries else row)
    return open_rows


class SkipAudited(beam.PTransform):
    """Drop the rows whose (class, video) the audit on disk already settles: resume as a join, so the
    set of finished candidates is never held in one place (nor pickled into the DoFns)."""

    def __init__(self, audited: beam.PCollection, tries: bool = False):
        super().__init__()
        self.audited, self.tries = audited, tries

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return (
            {"row": rows | "ByCandidate" >> beam.Map(lambda r: (candidate_key(r), r)), "audited": self.audited}
            | "JoinAudit" >> beam.CoGroupByKey()
            | "Unaudited" >> beam.FlatMap(lambda kv, t: unsettled(kv[1]["audited"], kv[1]["row"], t), self.tries)
        )


class SkipKeptElsewhere(beam.PTransform):
    """One class per video across runs: a candidate whose video an earlier run kept under another
    class becomes a ``kept_for_other_class`` row instead of being fetched again (a join on the
    video's identity with the metadata on disk, like :class:`SkipAudited`)."""

    def __init__(self, kept: beam.PCollection):
        super().__init__()
        self.kept = kept

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return (
            {"row": rows | "ByVideo" >> beam.Map(lambda r: (video_identity(r), r)), "kept": self.kept}
            | "JoinKept" >> beam.CoGroupByKey()
            | "OtherClass" >> beam.FlatMap(lambda kv: [kept_elsewhere(r, kv[1]["kept"]) for r in kv[1]["row"]])
        )


def _writer_key(row: dict, writers: int) -> int:
    return zlib.crc32(row["key"].encode()) % writers


def build(pipeline: beam.Pipeline, settings: CurateSettings, classes: list[ImageNetClass], source: Source,
          state: RunState, shared: Shared) -> None:
    """Add the curation stages to ``pipeline``."""
    out, run_id = state.out, state.run_id

    audited = (
        pipeline
        | "AuditFiles" >> beam.Create([join(out, AUDIT, "*.parquet")])
        | "ReadAudit" >> beam.io.ReadAllFromParquet(columns=["wnid", "id", "status", "url", "path"])
        | "AuditedKeys" >> beam.Map(lambda r: (candidate_key(r), (r["status"], location(r))))
    )
    searched = (
        pipeline
        | "Classes" >> beam.Create(classes)
        | "SpreadClasses" >> beam.Reshuffle()  # each class's search is long and sequential: spread them
        | "SearchTitles" >> beam.ParDo(SearchTitles(source, settings.search.search_page, settings.candidates,
                                                    settings.client, run_id))
        .with_outputs(AUDIT_TAG, SEARCH_TAG, REQUESTS_TAG, main="candidates")
    )
    (
        searched[SEARCH_TAG]
        | "WriteSearchFacts" >> beam.io.WriteToParquet(join(out, SEARCH, run_id), SEARCH_SCHEMA, num_shards=1,
                                                       shard_name_template="", file_name_suffix=".parquet")
    )
    invalid = (
        pipeline
        | "CatalogCheck" >> beam.Create([None])
        | "InvalidRows" >> beam.FlatMap(lambda _, src, run: [
            audit_row({"id": f"row:{r['row']}", "title": r.get("title"), "url": r.get("url"), "path": r.get("path"),
                       "source": src.name, "run_id": run}, INVALID_ROW, r["reason"])
            for r in src.invalid_rows()], source, run_id)
    )
    kept_before = (
        pipeline
        | "KeptFiles" >> beam.Create([join(out, METADATA, "*.parquet")])
        | "ReadKept" >> beam.io.ReadAllFromParquet(columns=["run_id", "wnid", "name", "id", "url", "path"])
        | "KeptByVideo" >> beam.Map(lambda r: (video_identity(r), r))
    )
    pending = (
        searched.candidates
        | "SkipDone" >> SkipAudited(audited, tries=True)
        | "SkipKeptElsewhere" >> SkipKeptElsewhere(kept_before)
        | "Duration" >> beam.FlatMap(lambda c, m: route([c if "status" in c else check_duration(c, m)]),
                                     settings.candidates.min_duration)
        .with_outputs(AUDIT_TAG, main="ok")
    )
    batch = settings.judge.clip_batch
    frames = settings.judge.frames
    jobs = (
        pending.ok
        | "ByVideo" >> beam.Map(lambda c: (video_identity(c), c))
        | "GroupVideo" >> beam.GroupByKey()
        | "ClipJobs" >> beam.MapTuple(lambda identity, cands: ClipJob(identity, sorted(cands, key=lambda c: c["wnid"])))
        | "ToFetch" >> beam.Partition(lambda job, n: int(needs_fetch(job, out, frames)), 2)
    )
    sessions = read_sessions(settings.client)
    passes = min(len(sessions), 3)  # a parked session's videos go on to up to two other sessions
    fetched, tallies, waiting = [jobs[0]], [], jobs[1]
    for turn in range(passes):
        served = waiting | f"FetchPass{turn}" >> FetchPass(settings, out, run_id, sessions, turn, turn == passes - 1)
        fetched.append(served.fetched)
        tallies.append(served[REQUESTS_TAG])
        waiting = served[DEFERRED_TAG]
    downloads = (
        tallies
        | "DownloadTallies" >> beam.Flatten()
        | "CountDownloads" >> beam.Map(count_requests)
        | "DownloadRequests" >> beam.CombineGlobally(merge_rows).without_defaults()
    )
    judged = (
        fetched
        | "AllClipJobs" >> beam.Flatten()
        | "SpreadClips" >> beam.Reshuffle()
        # A fixed batch size (not Beam's adaptive 1..max): memory then depends on --clip-batch, not on
        # how many clips the run has.
        | "BatchClips" >> beam.BatchElements(min_batch_size=batch, max_batch_size=batch)
        | "JudgeClips" >> beam.ParDo(JudgeClips(settings, out, run_id, shared)).with_outputs(AUDIT_TAG, REQUESTS_TAG,
                                                                                           main="kept")
    )
    (
        (searched[REQUESTS_TAG] | "CountSearches" >> beam.Map(count_requests), downloads,
         judged[REQUESTS_TAG] | "CountJudgeRequests" >> beam.Map(count_requests))
        | "AllRequests" >> beam.Flatten()
        | "WriteRequests" >> beam.io.WriteToParquet(join(out, REQUESTS, run_id), REQUESTS_SCHEMA, num_shards=1,
                                                    shard_name_template="", file_name_suffix=".parquet")
    )
    (
        judged.kept
        | "ByWriter" >> beam.Map(lambda r, n: (_writer_key(r, n), r), settings.writers).with_output_types(
            beam.typehints.KV[int, dict])
        | "ShardBatches" >> beam.GroupIntoBatches(settings.write.shard_size)
        | "WriteShards" >> beam.ParDo(WriteShard(state, settings.write.trainer_copy))
    )
    (
        (invalid, searched[AUDIT_TAG], pending[AUDIT_TAG], judged[AUDIT_TAG])
        | "AllDrops" >> beam.Flatten()
        | "OnlyNew" >> SkipAudited(audited)
        | "CountDrops" >> beam.Map(count_drop)
        | "WriteAudit" >> beam.io.WriteToParquet(join(out, AUDIT, f"drops-{run_id}"), AUDIT_SCHEMA,
                                                 file_name_suffix=".parquet")
    )


def run(settings: CurateSettings, classes: list[ImageNetClass], source: Source, state: RunState,
        shared: Shared | None = None) -> PipelineResult:
    """Build and run the pipeline to completion; its result holds the counters (:mod:`~videonet.pipelines.counters`)."""
    try:
        with job_service(settings) as settings, new_pipeline(settings) as pipeline:
            build(pipeline, settings, classes, source, state, shared or Shared())
        return pipeline.result
    except Exception as exc:  # the runner wraps a DoFn's error: the breaker's line is found in its text
        tripped = CircuitOpen.found_in(f"{exc!r} {exc}")
        if tripped is None:
            raise
        raise tripped from None
