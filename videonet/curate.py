"""Driver of a curation run: resolve options, recover/resume the run dir, run Beam, report.

The CLI calls :func:`curate`; tests call it directly with the same arguments.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

from videonet.errors import UserError


@dataclass
class CurateOptions:
    """The options of ``videonet curate`` (see its --help for what each means)."""

    out: str
    classes: str = "imagenet1k"
    source: str = "youtube"
    per_class: int = 5000
    per_term: int = 100
    min_duration: float = 10.0
    frames: int = 100
    chunk: int = 25
    classifier: str = "resnet50"
    weights: str | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    clip_batch: int = 8
    shard_size: int = 100
    shard_writers: int = 0  # 0: one on the local runner, 32 on distributed runners
    catalog_root: str | None = None
    search_template: str = "ytsearch{n}:{term}"
    demo_dir: str | None = None
    max_download_mb: float = 200.0
    download_timeout_s: float = 300.0
    decode_timeout_s: float = 120.0
    runner: str = "DirectRunner"
    beam_args: list[str] = field(default_factory=list)
    progress: bool = True


def _check(options: CurateOptions) -> None:
    for name in ("per_class", "per_term", "frames", "chunk", "clip_batch", "shard_size"):
        if getattr(options, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if options.min_duration < 0:
        raise UserError("--min-duration must not be negative")


def pipeline_options(options: CurateOptions):
    """Beam options: --runner plus every flag given after ``--`` on the command line."""
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions([f"--runner={options.runner}", *options.beam_args], pickle_library="cloudpickle")


def is_local(options: CurateOptions) -> bool:
    return options.runner in ("DirectRunner", "direct")


def prepare(options: CurateOptions):
    """Resolve options into the pipeline's config: classes, source, resume state of ``out``."""
    from videonet.classifier import ClassifierSpec
    from videonet.fetch import FetchLimits
    from videonet.outputs import done_candidates, recover
    from videonet.pipelines.curate import CurateConfig
    from videonet.sources import make_source
    from videonet.verdicts import FilterSettings
    from videonet.vocab import parse_classes

    _check(options)
    classes = parse_classes(options.classes)
    source = make_source(options.source, options.catalog_root, options.search_template, options.demo_dir)
    out = options.out.rstrip("/")
    removed = recover(out)
    if removed:
        print(f"recovered {out}: removed {len(removed)} files of an interrupted commit")
    done = done_candidates(out)
    if done:
        print(f"resuming {out}: {len(done)} candidates already audited are skipped")
    local = is_local(options)
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    settings = FilterSettings(
        out=out, frames=options.frames, chunk=options.chunk, min_duration=options.min_duration,
        decode_timeout_s=options.decode_timeout_s,
        limits=FetchLimits(max_bytes=int(options.max_download_mb * 1024 * 1024),
                           max_seconds=options.download_timeout_s))
    return CurateConfig(
        classes=classes, source=source, run_id=run_id, settings=settings, per_class=options.per_class,
        per_term=options.per_term, clip_batch=options.clip_batch,
        classifier=ClassifierSpec(options.classifier, options.weights, options.device, options.precision,
                                  options.compile), shard_size=options.shard_size, done=done,
        writers=options.shard_writers or (1 if local else 32), progress=options.progress and local)


def dry_run(options: CurateOptions) -> int:
    """Build the pipeline graph with the given runner options without running it; count transforms."""
    import apache_beam as beam
    from apache_beam.utils.shared import Shared

    from videonet.pipelines.curate import build

    pipeline = beam.Pipeline(options=pipeline_options(options))
    build(pipeline, prepare(options), Shared())
    return len(pipeline.to_runner_api().components.transforms)


def curate(options: CurateOptions) -> dict:
    """Run (or resume) a curation into ``options.out`` and return the report summary."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.utils.shared import Shared

    from videonet.outputs import WORK, join
    from videonet.pipelines.curate import acquire_classifier, run
    from videonet.report import build_report

    cfg = prepare(options)
    shared = Shared()
    # Fail fast, in one line, on weights that cannot be loaded, before any search or download; on
    # the local runner the DoFns then reuse this very model through the Shared handle.
    model = acquire_classifier(shared, cfg) if is_local(options) else None
    run(cfg, pipeline_options(options), shared)
    del model
    out = cfg.settings.out
    staging = join(out, WORK, "staging")
    if FileSystems.exists(staging):  # every staged download is inside a committed shard now
        FileSystems.delete([staging])
    return build_report(out)
