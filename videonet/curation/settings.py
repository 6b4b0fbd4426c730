"""The settings of a curation run and its state: what ``videonet curate`` reads from its command line.

Each stage owns a small frozen dataclass of its settings, defaults written once there;
:class:`CurateSettings` gathers them and ``videonet curate``'s options are generated from their
fields (:mod:`videonet.options`), so an option, its default and its help exist in one place. Run
state (the run id, what a previous run already audited) is not configuration: it lives in
:class:`RunState` and in the run directory itself.

This module imports no Beam, torch or pandas (``--help`` reads it); the runner plumbing that turns
:class:`RunnerSettings` into a Beam pipeline is ``videonet.pipelines.runners``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import typing
from dataclasses import dataclass, field
from typing import Any, Iterator

from videonet import options
from videonet.curation.candidates import CandidateSettings
from videonet.curation.client import ClientSettings
from videonet.curation.judge import JudgeSettings
from videonet.curation.judge.classifier import ClassifierSettings
from videonet.curation.judge.fetch import FetchSettings
from videonet.curation.search import SearchSettings
from videonet.curation.vocabulary.classes import VocabularySettings
from videonet.curation.write import WriteSettings
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

    @property
    def flink(self) -> bool:
        return self.runner in FLINK_RUNNERS


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
