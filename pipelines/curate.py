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
import zlib
from typing import Iterable

import apache_beam as beam
from apache_beam.utils.shared import Shared

from videonet.curation.candidates import INFLECTED, CandidateSettings, ClassCandidates, check_duration, video_identity
from videonet.curation.client import REQUESTS_SCHEMA, ClientSettings, session
from videonet.curation.judge.classifier import ClassifierSettings
from videonet.curation.judge.fetch import sweep_stale_downloads
from videonet.curation.judge.verdicts import judge_clips
from videonet.curation.settings import CurateSettings, RunState
from videonet.curation.search import SEARCH_SCHEMA, Source, search_class
from videonet.curation.vocabulary.classes import ImageNetClass
from videonet.curation.write.records import AUDIT_SCHEMA, INVALID_ROW, audit_row, candidate_key, settles
from videonet.curation.write.rundir import AUDIT, REQUESTS, SEARCH, join
from videonet.pipelines.runners import job_service, new_pipeline

AUDIT_TAG = "audit"
SEARCH_TAG = "search"
REQUESTS_TAG = "requests"


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
    """Fetch, decode and classify a batch of clips with one model shared per worker process."""

    def __init__(self, settings: CurateSettings, out: str, run_id: str, shared: Shared):
        self.settings, self.out, self.run_id, self.shared = settings, out, run_id, shared

    def setup(self):
        sweep_stale_downloads()  # what a killed worker on this machine left in the temp dir
        self.classifier = acquire_classifier(self.shared, self.settings.classifier)
        self.bar = None
        if self.settings.runner.progress and self.settings.runner.local:
            from tqdm import tqdm

            self.bar = tqdm(desc="clips judged", unit="clip", leave=False)

    def process(self, jobs: list[tuple[str, list[dict]]]):
        s = self.settings
        site = session("download", s.client)
        yield from route(judge_clips(jobs, self.classifier, s.judge, s.fetch, s.candidates.min_duration, self.out,
                                     site))
        if site.tally.requests:
            yield beam.pvalue.TaggedOutput(REQUESTS_TAG, site.tally.row(self.run_id))
        if self.bar is not None:
            self.bar.update(len(jobs))

    def teardown(self):
        if self.bar is not None:
            self.bar.close()


class WriteShard(beam.DoFn):
    """Commit one batch of kept clips as a shard part (tar + metadata + kept audit rows)."""

    def __init__(self, state: RunState):
        self.state = state

    def process(self, batch):
        from videonet.curation.write.rundir import commit_part

        _, rows = batch
        keys = "|".join(sorted(r["key"] for r in rows))
        part = f"{self.state.run_id}-{hashlib.sha1(keys.encode()).hexdigest()[:12]}"
        commit_part(self.state.out, part, list(rows))
        yield part


class SkipAudited(beam.PTransform):
    """Drop the rows whose (class, video) the audit on disk already has: resume as a join, so the
    set of finished candidates is never held in one place (nor pickled into the DoFns)."""

    def __init__(self, audited: beam.PCollection):
        super().__init__()
        self.audited = audited

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return (
            {"row": rows | "ByCandidate" >> beam.Map(lambda r: (candidate_key(r), r)), "audited": self.audited}
            | "JoinAudit" >> beam.CoGroupByKey()
            | "Unaudited" >> beam.FlatMap(lambda kv: [] if kv[1]["audited"] else kv[1]["row"])
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
        | "ReadAudit" >> beam.io.ReadAllFromParquet(columns=["wnid", "id", "status"])
        | "Settled" >> beam.Filter(lambda r: settles(r["status"]))  # a rerun retries the retriable ones
        | "AuditedKeys" >> beam.Map(lambda r: (candidate_key(r), None))
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
    pending = (
        searched.candidates
        | "SkipDone" >> SkipAudited(audited)
        | "Duration" >> beam.FlatMap(lambda c, m: route([check_duration(c, m)]), settings.candidates.min_duration)
        .with_outputs(AUDIT_TAG, main="ok")
    )
    batch = settings.judge.clip_batch
    judged = (
        pending.ok
        | "ByVideo" >> beam.Map(lambda c: (video_identity(c), c))
        | "GroupVideo" >> beam.GroupByKey()
        | "ClipJobs" >> beam.MapTuple(lambda identity, cands: (identity, sorted(cands, key=lambda c: c["wnid"])))
        | "SpreadClips" >> beam.Reshuffle()
        # A fixed batch size (not Beam's adaptive 1..max): memory then depends on --clip-batch, not on
        # how many clips the run has.
        | "BatchClips" >> beam.BatchElements(min_batch_size=batch, max_batch_size=batch)
        | "JudgeClips" >> beam.ParDo(JudgeClips(settings, out, run_id, shared)).with_outputs(AUDIT_TAG, REQUESTS_TAG,
                                                                                           main="kept")
    )
    (
        (searched[REQUESTS_TAG], judged[REQUESTS_TAG])
        | "AllRequests" >> beam.Flatten()
        | "WriteRequests" >> beam.io.WriteToParquet(join(out, REQUESTS, run_id), REQUESTS_SCHEMA, num_shards=1,
                                                    shard_name_template="", file_name_suffix=".parquet")
    )
    (
        judged.kept
        | "ByWriter" >> beam.Map(lambda r, n: (_writer_key(r, n), r), settings.writers).with_output_types(
            beam.typehints.KV[int, dict])
        | "ShardBatches" >> beam.GroupIntoBatches(settings.write.shard_size)
        | "WriteShards" >> beam.ParDo(WriteShard(state))
    )
    (
        (invalid, searched[AUDIT_TAG], pending[AUDIT_TAG], judged[AUDIT_TAG])
        | "AllDrops" >> beam.Flatten()
        | "OnlyNew" >> SkipAudited(audited)
        | "WriteAudit" >> beam.io.WriteToParquet(join(out, AUDIT, f"drops-{run_id}"), AUDIT_SCHEMA,
                                                 file_name_suffix=".parquet")
    )


def run(settings: CurateSettings, classes: list[ImageNetClass], source: Source, state: RunState,
        shared: Shared | None = None) -> None:
    """Build and run the pipeline to completion."""
    with job_service(settings) as settings, new_pipeline(settings) as pipeline:
        build(pipeline, settings, classes, source, state, shared or Shared())
