"""The VideoNet curation pipeline on Apache Beam.

vocabulary -> title queries -> title match -> dedup + cap -> duration -> clips -> frames ->
verdicts -> shards / metadata / audit. The rules live in ``videonet.candidates``,
``videonet.rules`` and ``videonet.verdicts``; the DoFns here only route rows. Rows that carry a
``status`` are audit rows and leave the main flow through the ``audit`` output.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Iterable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils.shared import Shared

from videonet.candidates import check_duration, dedup_class, hit_candidates, match_title, not_done, video_identity
from videonet.classifier import ClassifierSpec
from videonet.fetch import sweep_stale_downloads
from videonet.outputs import AUDIT, join
from videonet.records import AUDIT_SCHEMA, INVALID_ROW, SEARCH_ERROR, audit_row
from videonet.sources import Source
from videonet.verdicts import FilterSettings, judge_clips
from videonet.vocab import ImageNetClass

AUDIT_TAG = "audit"


@dataclass
class CurateConfig:
    """Everything the pipeline needs, picklable for remote workers."""

    classes: list[ImageNetClass]
    source: Source
    run_id: str
    settings: FilterSettings
    per_class: int = 5000
    per_term: int = 100
    classifier: ClassifierSpec = field(default_factory=ClassifierSpec)
    clip_batch: int = 8
    shard_size: int = 100
    writers: int = 1
    done: set[str] = field(default_factory=set)
    progress: bool = False


def route(rows: Iterable[dict]):
    """Send audit rows (with a status) to the audit output, candidates to the main one."""
    for row in rows:
        yield beam.pvalue.TaggedOutput(AUDIT_TAG, row) if "status" in row else row


class SearchTitles(beam.DoFn):
    """Run every query term of a class against the source; a failed search becomes an audit row."""

    def __init__(self, cfg: CurateConfig):
        self.source, self.per_term, self.run_id = cfg.source, cfg.per_term, cfg.run_id

    def process(self, cls: ImageNetClass):
        for order, term in enumerate(cls.terms):
            try:
                hits = self.source.search(term, self.per_term)
            except Exception as exc:  # network, extractor or catalog failure: audited, the run goes on
                row = {"wnid": cls.wnid, "class_index": cls.index, "name": cls.name, "term": term,
                       "id": f"search:{term}", "source": self.source.name, "run_id": self.run_id}
                yield beam.pvalue.TaggedOutput(AUDIT_TAG, audit_row(row, SEARCH_ERROR,
                                                                   " ".join(str(exc).split())[:300]))
                continue
            for candidate in hit_candidates(cls, order, term, hits, self.source.name, self.run_id):
                yield (cls.wnid, match_title(candidate, cls.terms))


def acquire_classifier(shared: Shared, cfg: CurateConfig):
    """The one classifier of this worker process (loaded once, shared by all DoFn instances)."""
    return shared.acquire(cfg.classifier.load, tag=repr(cfg.classifier))


class JudgeClips(beam.DoFn):
    """Fetch, decode and classify a batch of clips with one model shared per worker process."""

    def __init__(self, cfg: CurateConfig, shared: Shared):
        self.cfg, self.shared = cfg, shared

    def setup(self):
        sweep_stale_downloads()  # what a killed worker on this machine left in the temp dir
        self.classifier = acquire_classifier(self.shared, self.cfg)
        self.bar = None
        if self.cfg.progress:
            from tqdm import tqdm

            self.bar = tqdm(desc="clips judged", unit="clip", leave=False)

    def process(self, jobs: list[tuple[str, list[dict]]]):
        yield from route(judge_clips(jobs, self.classifier, self.cfg.settings))
        if self.bar is not None:
            self.bar.update(len(jobs))

    def teardown(self):
        if self.bar is not None:
            self.bar.close()


class WriteShard(beam.DoFn):
    """Commit one batch of kept clips as a shard part (tar + metadata + kept audit rows)."""

    def __init__(self, out: str, run_id: str):
        self.out, self.run_id = out, run_id

    def process(self, batch):
        from videonet.outputs import commit_part

        _, rows = batch
        keys = "|".join(sorted(r["key"] for r in rows))
        part = f"{self.run_id}-{hashlib.sha1(keys.encode()).hexdigest()[:12]}"
        commit_part(self.out, part, list(rows))
        yield part


def _writer_key(row: dict, writers: int) -> int:
    return zlib.crc32(row["key"].encode()) % writers


def build(pipeline: beam.Pipeline, cfg: CurateConfig, shared: Shared) -> None:
    """Add the curation stages to ``pipeline``."""
    out = cfg.settings.out

    searched = (
        pipeline
        | "Classes" >> beam.Create(cfg.classes)
        | "SearchTitles" >> beam.ParDo(SearchTitles(cfg)).with_outputs(AUDIT_TAG, main="hits")
    )
    invalid = (
        pipeline
        | "CatalogCheck" >> beam.Create([None])
        | "InvalidRows" >> beam.FlatMap(lambda _, src, run: [
            audit_row({"id": f"row:{r['row']}", "title": r.get("title"), "url": r.get("url"), "path": r.get("path"),
                       "source": src.name, "run_id": run}, INVALID_ROW, r["reason"])
            for r in src.invalid_rows()], cfg.source, cfg.run_id)
    )
    matched = (
        searched.hits
        | "SpreadSearchFanOut" >> beam.Reshuffle()
        | "TitleMatch" >> beam.FlatMap(lambda kv: route([kv[1]])).with_outputs(AUDIT_TAG, main="ok")
    )
    candidates = (
        matched.ok
        | "ByClass" >> beam.Map(lambda c: (c["wnid"], c))
        | "GroupClass" >> beam.GroupByKey()
        | "DedupAndCap" >> beam.FlatMap(lambda kv, cap: route(dedup_class(kv[1], cap)), cfg.per_class)
        .with_outputs(AUDIT_TAG, main="ok")
    )
    pending = (
        candidates.ok
        | "SkipDone" >> beam.Filter(not_done, cfg.done)
        | "Duration" >> beam.FlatMap(lambda c, m: route([check_duration(c, m)]), cfg.settings.min_duration)
        .with_outputs(AUDIT_TAG, main="ok")
    )
    judged = (
        pending.ok
        | "ByVideo" >> beam.Map(lambda c: (video_identity(c), c))
        | "GroupVideo" >> beam.GroupByKey()
        | "ClipJobs" >> beam.MapTuple(lambda identity, cands: (identity, sorted(cands, key=lambda c: c["wnid"])))
        | "SpreadClips" >> beam.Reshuffle()
        # A fixed batch size (not Beam's adaptive 1..max): memory then depends on --clip-batch, not on
        # how many clips the run has.
        | "BatchClips" >> beam.BatchElements(min_batch_size=cfg.clip_batch, max_batch_size=cfg.clip_batch)
        | "JudgeClips" >> beam.ParDo(JudgeClips(cfg, shared)).with_outputs(AUDIT_TAG, main="kept")
    )
    (
        judged.kept
        | "ByWriter" >> beam.Map(lambda r, n: (_writer_key(r, n), r), cfg.writers).with_output_types(
            beam.typehints.KV[int, dict])
        | "ShardBatches" >> beam.GroupIntoBatches(cfg.shard_size)
        | "WriteShards" >> beam.ParDo(WriteShard(out, cfg.run_id))
    )
    (
        (invalid, searched[AUDIT_TAG], matched[AUDIT_TAG], candidates[AUDIT_TAG], pending[AUDIT_TAG],
         judged[AUDIT_TAG])
        | "AllDrops" >> beam.Flatten()
        | "OnlyNew" >> beam.Filter(not_done, cfg.done)
        | "WriteAudit" >> beam.io.WriteToParquet(join(out, AUDIT, f"drops-{cfg.run_id}"), AUDIT_SCHEMA,
                                                 file_name_suffix=".parquet")
    )


def run(cfg: CurateConfig, options: PipelineOptions, shared: Shared | None = None) -> None:
    """Build and run the pipeline to completion."""
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, cfg, shared or Shared())
