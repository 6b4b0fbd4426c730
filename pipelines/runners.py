"""Runner plumbing beside the graph: Beam's flags for ``--runner``, the local FnApiRunner, and the job
server of an embedded Flink. The driver (``videonet.curation.run``) builds each pipeline through here."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import typing
from typing import Iterator

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.flink_runner import MAGIC_HOST_NAMES

from videonet.curation.settings import CurateSettings
from videonet.quiet import quiet_data_plane_hang_up


def _given(beam_args: typing.Sequence[str]) -> set[str]:
    """The Beam options named in ``beam_args``, spelled with underscores."""
    return {arg[2:].split("=", 1)[0].replace("-", "_") for arg in beam_args if arg.startswith("--")}


def _flink_master(beam_args: typing.Sequence[str]) -> str:
    return next((a.split("=", 1)[1] for a in beam_args if a.startswith("--flink_master=")), "[local]")


def beam_flags(settings: CurateSettings) -> list[str]:
    """``--runner``, the flags given after ``--``, then what the runner needs and was not given.

    FlinkRunner with no flag runs on an embedded Flink (``[local]``) with the job server that
    ``install.sh`` cached, one task slot per core, and the SDK worker in this process (LOOPBACK,
    like the DirectRunner); on a cluster (``--flink_master=HOST:PORT``) the environment is left
    to the user (PROCESS with ``python -m videonet.flink boot``, or DOCKER: README's *Scaling out*).
    """
    beam_args = settings.beam_args
    flags = [f"--runner={settings.runner.runner}", *beam_args]
    if not settings.runner.flink:
        return flags
    from videonet import flink

    given = _given(beam_args)
    defaults = {"flink_master": lambda: "[local]", "flink_version": lambda: flink.FLINK_VERSION,
                "flink_job_server_jar": lambda: str(flink.job_server_jar()),
                "parallelism": lambda: str(os.cpu_count() or 1)}
    if _flink_master(beam_args) in MAGIC_HOST_NAMES:
        defaults["environment_type"] = lambda: "LOOPBACK"
    return flags + [f"--{name}={value()}" for name, value in defaults.items() if name not in given]


def embedded_flink(settings: CurateSettings) -> bool:
    """FlinkRunner on a Flink inside the job server's JVM: no cluster named, no job server given."""
    return (settings.runner.flink and _flink_master(settings.beam_args) in MAGIC_HOST_NAMES
            and "job_endpoint" not in _given(settings.beam_args))


def new_pipeline(settings: CurateSettings) -> beam.Pipeline:
    """An empty Beam pipeline with ``--runner``, every flag given after ``--`` and the runner's defaults.

    The local runner is Beam's FnApiRunner in this process, named outright. Left to itself, Beam's
    DirectRunner tries Prism (a Go binary it downloads) and, since ``GroupIntoBatches`` declares a
    processing-time timer, falls back to its legacy bundle-based runner, which holds every element
    as a Python object and builds a slower graph. The FnApiRunner runs ``GroupIntoBatches`` as is
    (that timer is only set with a buffering duration) and still reads ``--direct_num_workers`` and
    ``--direct_running_mode``.
    """
    options = PipelineOptions(beam_flags(settings), pickle_library="cloudpickle")
    if settings.runner.flink:  # its SDK worker may run in this process (LOOPBACK): a quiet end of the job
        quiet_data_plane_hang_up()
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
    if not embedded_flink(settings):
        yield settings
        return
    from videonet import flink

    with flink.embedded_job_server() as endpoint:
        yield dataclasses.replace(settings, beam_args=(*settings.beam_args, f"--job_endpoint={endpoint}"))
