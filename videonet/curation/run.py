"""Driver of a curation run: the settings of every stage, the run's state, Beam, the report.

Each stage owns a small frozen dataclass of its settings, defaults written once there;
:class:`CurateSettings` gathers them and ``videonet curate``'s options are generated from their
fields (``videonet.cli``), so an option, its default and its help exist in one place. Run state
(the run id, what a previous run already audited) is not configuration: it lives in
:class:`RunState` and in the run directory itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import secrets
import typing
from dataclasses import dataclass, field
from typing import Any, Iterator

from videonet.curation.candidates import CandidateSettings
from videonet.curation.client import ClientSettings
from videonet.curation.judge.classifier import ClassifierSettings
from videonet.curation.judge.fetch import FetchSettings
from videonet.curation.judge import JudgeSettings
from videonet.curation.search import SearchSettings
from videonet.curation.vocabulary.classes import VocabularySettings
from videonet.curation.write import WriteSettings
from videonet import options
from videonet.errors import UserError
from videonet.options import check_fields, from_flat

LOCAL_RUNNERS = ("DirectRunner", "direct")
FLINK_RUNNERS = ("FlinkRunner", "flink")


@dataclass(frozen=True)
class RunnerSettings:
    """Where the pipeline runs; Beam's own flags follow ``--`` on the command line."""

    runner: str = field(default="DirectRunner", metadata={
        "help": "Beam runner: DirectRunner, DataflowRunner, FlinkRunner, ..."})
    progress: bool = field(default=True, metadata={"help": "Show tqdm progress on the local runner."})

    @property
    def local(self) -> bool:
        return self.runner in LOCAL_RUNNERS

    def beam_flags(self, beam_args: typing.Sequence[str]) -> list[str]:
        """``--runner``, the flags given after ``--``, then what the runner needs and was not given.

        FlinkRunner with no flag runs on an embedded Flink (``[local]``) with the job server that
        ``install.sh`` cached, one task slot per core, and the SDK worker in this process (LOOPBACK,
        like the DirectRunner); on a cluster (``--flink_master=HOST:PORT``) the environment is left
        to the user (PROCESS with ``python -m videonet.flink boot``, or DOCKER: README's *Scaling out*).
        """
        flags = [f"--runner={self.runner}", *beam_args]
        if self.runner not in FLINK_RUNNERS:
            return flags
        from apache_beam.runners.portability.flink_runner import MAGIC_HOST_NAMES

        from videonet import flink

        given = _given(beam_args)
        defaults = {"flink_master": lambda: "[local]", "flink_version": lambda: flink.FLINK_VERSION,
                    "flink_job_server_jar": lambda: str(flink.job_server_jar()),
                    "parallelism": lambda: str(os.cpu_count() or 1)}
        if _flink_master(beam_args) in MAGIC_HOST_NAMES:
            defaults["environment_type"] = lambda: "LOOPBACK"
        return flags + [f"--{name}={value()}" for name, value in defaults.items() if name not in given]

    def embedded_flink(self, beam_args: typing.Sequence[str]) -> bool:
        """FlinkRunner on a Flink inside the job server's JVM: no cluster named, no job server given."""
        from apache_beam.runners.portability.flink_runner import MAGIC_HOST_NAMES

        return (self.runner in FLINK_RUNNERS and _flink_master(beam_args) in MAGIC_HOST_NAMES
                and "job_endpoint" not in _given(beam_args))


def _given(beam_args: typing.Sequence[str]) -> set[str]:
    """The Beam options named in ``beam_args``, spelled with underscores."""
    return {arg[2:].split("=", 1)[0].replace("-", "_") for arg in beam_args if arg.startswith("--")}


def _flink_master(beam_args: typing.Sequence[str]) -> str:
    return next((a.split("=", 1)[1] for a in beam_args if a.startswith("--flink_master=")), "[local]")


@dataclass(frozen=True)
class CurateSettings:
    """Every setting of ``videonet curate``, one section per stage, in the order data flows."""

    vocabulary: VocabularySettings = field(default_factory=VocabularySettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    candidates: CandidateSettings = field(default_factory=CandidateSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    write: WriteSettings = field(default_factory=WriteSettings)
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    beam_args: tuple[str, ...] = ()  # Beam pipeline flags, given after `--`

    @classmethod
    def of(cls, beam_args: typing.Sequence[str] = (), **flat: Any) -> "CurateSettings":
        """Build from flat option names (the CLI's, with underscores); each goes to the section that owns it."""
        sections = {name: from_flat(section, flat) for name, section in sections_of(cls)}
        if flat:
            raise TypeError(f"unknown curate settings: {', '.join(sorted(flat))}")
        settings = cls(**sections, beam_args=tuple(beam_args))
        settings.check()
        return settings

    def check(self) -> None:
        """One-line errors for values outside a field's declared minimum or choices, or that contradict each other."""
        for name, _ in sections_of(type(self)):
            check_fields(getattr(self, name))
        prefix = self.fetch.judge_prefix
        if prefix and prefix < self.candidates.min_duration:  # a prefix shorter would read as a short video
            raise UserError(f"--judge-prefix must be 0 or at least --min-duration ({self.candidates.min_duration:g} s)")

    @property
    def writers(self) -> int:
        """Parallel shard writers: the option, or 1 on the local runner and 32 on distributed ones."""
        return self.write.shard_writers or (1 if self.runner.local else 32)


def sections_of(cls: type) -> Iterator[tuple[str, type]]:
    """(name, settings dataclass) of each section of :class:`CurateSettings`, in declaration order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield f.name, hints[f.name]


def option_fields() -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """(section, field, resolved type) of every field that is a command-line option (for building the CLI)."""
    return options.option_fields(list(sections_of(CurateSettings)))


@dataclass(frozen=True)
class RunState:
    """What one run of the pipeline is: where it writes, and its id (names its audit and shard files)."""

    out: str
    run_id: str

    @classmethod
    def new(cls, out: str) -> "RunState":
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        return cls(out.rstrip("/"), f"{stamp}-{secrets.token_hex(3)}")


def new_pipeline(settings: CurateSettings):
    """An empty Beam pipeline with ``--runner``, every flag given after ``--`` and the runner's defaults.

    The local runner is Beam's FnApiRunner in this process, named outright. Left to itself, Beam's
    DirectRunner tries Prism (a Go binary it downloads) and, since ``GroupIntoBatches`` declares a
    processing-time timer, falls back to its legacy bundle-based runner, which holds every element
    as a Python object and builds a slower graph. The FnApiRunner runs ``GroupIntoBatches`` as is
    (that timer is only set with a buffering duration) and still reads ``--direct_num_workers`` and
    ``--direct_running_mode``.
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(settings.runner.beam_flags(settings.beam_args), pickle_library="cloudpickle")
    if not settings.runner.local:
        return beam.Pipeline(options=options)
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return beam.Pipeline(runner=fn_runner.FnApiRunner(provision_info=provision), options=options)


@contextlib.contextmanager
def job_service(settings: CurateSettings) -> Iterator[CurateSettings]:
    """The settings to run one pipeline with, inside the block. An embedded Flink gets a job server of
    its own (:func:`videonet.flink.embedded_job_server`), stopped when the block ends rather than when
    this process exits: its JVM is the run's largest process, and the report that follows the
    pipeline needs the memory."""
    if not settings.runner.embedded_flink(settings.beam_args):
        yield settings
        return
    from videonet import flink

    with flink.embedded_job_server() as endpoint:
        yield dataclasses.replace(settings, beam_args=(*settings.beam_args, f"--job_endpoint={endpoint}"))


def dry_run(out: str, settings: CurateSettings) -> int:
    """Build the pipeline graph with the given runner options without running it; count transforms.

    Nothing on disk changes: no recovery, no demo clips, no run directory.
    """
    from apache_beam.utils.shared import Shared

    from videonet.curation.search import make_source
    from videonet.curation.vocabulary.classes import parse_classes
    from videonet.pipelines.curate import build

    classes, source = parse_classes(settings.vocabulary.classes), make_source(settings.search, settings.client)
    pipeline = new_pipeline(settings)
    build(pipeline, settings, classes, source, RunState.new(out), Shared())
    return len(pipeline.to_runner_api().components.transforms)


def curate(out: str, settings: CurateSettings) -> dict:
    """Run (or resume) a curation into ``out`` and return the report summary; one live run per ``out``."""
    from videonet.curation.write.lock import hold

    with hold(out.rstrip("/")):
        return _curate_held(out, settings)


def _curate_held(out: str, settings: CurateSettings) -> dict:
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.utils.shared import Shared

    from videonet.curation.report import build_report
    from videonet.curation.search import make_source
    from videonet.curation.vocabulary.classes import parse_classes
    from videonet.curation.write.resume import mark_finished, settings_key, unfinished
    from videonet.curation.write.rundir import WORK, join, recover
    from videonet.pipelines.curate import acquire_classifier, run

    classes, source = parse_classes(settings.vocabulary.classes), make_source(settings.search, settings.client)
    source.prepare()
    state = RunState.new(out)
    removed = recover(state.out)
    if removed:
        print(f"recovered {state.out}: removed {len(removed)} files of an interrupted commit")
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
        run(settings, todo, source, state, shared)
        mark_finished(state.out, state.run_id, key, todo)
        del model
    staging = join(state.out, WORK, "staging")
    if FileSystems.exists(staging):  # every staged download is inside a committed shard now
        FileSystems.delete([staging])
    return build_report(state.out)
