"""Driver of a curation run: above the graph, it recovers the run directory, decides what is left to
do, runs the Beam graph (``videonet.pipelines.curate``, through ``videonet.pipelines.runners``), marks
what finished and builds the report. The settings and the run's state are :mod:`videonet.curation.settings`.
"""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems
from apache_beam.utils.shared import Shared

from videonet.curation.report import build_report
from videonet.curation.search import make_source
from videonet.curation.settings import CurateSettings, RunState
from videonet.curation.vocabulary.classes import parse_classes
from videonet.curation.rundir.integrity import check, inspect, refuse
from videonet.curation.write.lock import hold
from videonet.curation.write.repair import repair as repair_run_dir
from videonet.curation.write.resume import mark_finished, settings_key, unfinished
from videonet.curation.write.shards import recover
from videonet.pipelines.curate import acquire_classifier, build, run
from videonet.pipelines.runners import new_pipeline
from videonet.curation.rundir import staging_dir


def dry_run(out: str, settings: CurateSettings) -> int:
    """Build the pipeline graph with the given runner options without running it; count transforms.

    Nothing on disk changes: no recovery, no demo clips, no run directory.
    """
    classes, source = parse_classes(settings.vocabulary.classes), make_source(settings.search, settings.client)
    pipeline = new_pipeline(settings)
    build(pipeline, settings, classes, source, RunState.new(out), Shared())
    return len(pipeline.to_runner_api().components.transforms)


def curate(out: str, settings: CurateSettings, repair: bool = False) -> dict:
    """Run (or resume) a curation into ``out`` and return the report summary; one live run per ``out``.

    A run directory with a damaged or missing file is a one-line error naming it; with ``repair``
    what can be rebuilt is rebuilt first and the rest is judged again (:mod:`~videonet.curation.rundir.integrity`
    finds the damage, :mod:`~videonet.curation.write.repair` rebuilds).
    """
    with hold(out.rstrip("/")):
        return _curate_held(out, settings, repair)


def _curate_held(out: str, settings: CurateSettings, repair: bool) -> dict:
    classes, source = parse_classes(settings.vocabulary.classes), make_source(settings.search, settings.client)
    source.prepare()
    state = RunState.new(out)
    removed = recover(state.out)
    if removed:
        print(f"recovered {state.out}: removed {len(removed)} files of an interrupted commit")
    if repair:
        for line in repair_run_dir(state.out, settings.write.trainer_copy):
            print(f"repaired {state.out}: {line}")
    else:
        refuse(check(state.out))
    key = settings_key(settings, source.fingerprint())
    # A recovery removed part of a commit: the finished marks no longer prove every class's verdicts are
    # on disk, so every class is searched again and the resume join decides what is left.
    todo = classes if removed else unfinished(state.out, key, classes)
    if len(todo) < len(classes):
        print(f"resuming {state.out}: {len(classes) - len(todo)} classes finished by an earlier run with these "
              "settings are not searched again")
    if todo:
        shared = Shared()
        # Fail fast, in one line, on weights that cannot be loaded, before any search or download; on
        # the local runner the DoFns then reuse this very model through the Shared handle. A finished
        # run's resume judges nothing and loads no model (that took most of its time).
        model = acquire_classifier(shared, settings.classifier) if settings.runner.local else None
        try:
            run(settings, todo, source, state, shared)
        except Exception:
            refuse(inspect(state.out))  # a file the pipeline could not read: name it
            raise
        mark_finished(state.out, state.run_id, key, todo)
        del model
    staging = staging_dir(state.out)
    if FileSystems.exists(staging):  # every staged download is inside a committed shard now
        FileSystems.delete([staging])
    return build_report(state.out)
