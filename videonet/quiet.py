"""A quiet start and a quiet end: no warnings about Beam's optional extras unless the command needs them,
no traceback when a portable runner's data plane hangs up at the end of a successful job.

``import apache_beam`` imports its BigQuery client stubs
(``apache_beam/io/gcp/internal/clients/bigquery/__init__.py``), which log "apitools not found, and
bigquery client libraries are not available ..." on the root logger when the ``[gcp]`` extra is
absent. videonet needs that extra only for ``gs://`` paths and Dataflow; for anything else the
line is noise the user cannot act on. The CLI installs this filter before anything imports Beam,
and only when the command line names nothing that needs the extra, so a ``gs://`` or Dataflow user
still hears that it is missing.
"""

from __future__ import annotations

import logging
from typing import Sequence

OPTIONAL_EXTRA_WARNINGS = ("apitools not found",)  # the start of each message, as Beam logs it
NEEDS_GCP = ("gs://", "dataflow")  # in any argument (lower-cased): a path or runner that needs [gcp]


class OptionalExtrasFilter(logging.Filter):
    """Drops the records that only say an optional Beam extra is not installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(OPTIONAL_EXTRA_WARNINGS)


def needs_gcp(argv: Sequence[str]) -> bool:
    """Whether the command line asks for something that needs Beam's [gcp] extra."""
    return any(marker in arg.lower() for arg in argv for marker in NEEDS_GCP)


def quiet_optional_extras(argv: Sequence[str]) -> bool:
    """Install the filter on the root logger (where Beam logs it) unless ``argv`` needs GCP; return
    whether it was installed. Call it before the first ``import apache_beam``."""
    if needs_gcp(argv):
        return False
    root = logging.getLogger()
    if not any(isinstance(f, OptionalExtrasFilter) for f in root.filters):
        root.addFilter(OptionalExtrasFilter())
    return True


# The end of a job on a portable runner (Flink): the job server hangs up the control and data streams of
# the SDK worker that runs in this process (LOOPBACK). Beam's data plane reader logs "Failed to read
# inputs in the data plane" with a gRPC CANCELLED traceback, and both the reader's thread and the SDK
# harness's control thread die with it, each printing it again. The job succeeded; a user reads those
# tracebacks as a failure. Only that exception is dropped, and only there: any other is still shown.
DATA_PLANE_LOGGER = "apache_beam.runners.worker.data_plane"
DATA_PLANE_READER = "read_grpc_client_inputs"  # the thread Beam reads the data plane in
SDK_HARNESS = "run_worker_"  # the threads of Beam's worker pool that run an SDK harness (name + worker id)
HANGING_UP = "Multiplexer hanging up"  # the job server's words when it closes the stream at the job's end
# The thread Beam reads state responses in: at the job's end its stream is reset by the runner (gRPC CANCELLED,
# "Stream removed"), which it prints as its death the same way.
STATE_READER = "read_state"
CANCELLED = "StatusCode.CANCELLED"


def is_hang_up(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the data plane closed by the runner at the end of a job."""
    return exc is not None and HANGING_UP in str(exc)


def ends_with_the_job(thread: str, exc: BaseException | None) -> bool:
    """Whether a Beam worker thread named ``thread`` died of its stream closed at the end of a job."""
    if thread.startswith((DATA_PLANE_READER, SDK_HARNESS)):
        return is_hang_up(exc)
    return thread == STATE_READER and exc is not None and CANCELLED in str(exc)


class DataPlaneHangUpFilter(logging.Filter):
    """Drops the data plane's log record of the runner's hang-up (and only that)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and is_hang_up(record.exc_info[1]))


def quiet_data_plane_hang_up() -> None:
    """Install the filter on Beam's data plane logger and let its reader thread, the SDK harness
    threads and the state reader end on the job's end without printing it; idempotent. Call it
    before running a pipeline on a portable runner."""
    import threading

    logger = logging.getLogger(DATA_PLANE_LOGGER)
    if any(isinstance(f, DataPlaneHangUpFilter) for f in logger.filters):
        return
    logger.addFilter(DataPlaneHangUpFilter())
    previous = threading.excepthook

    def excepthook(args: threading.ExceptHookArgs) -> None:
        if not (args.thread is not None and ends_with_the_job(args.thread.name, args.exc_value)):
            previous(args)

    threading.excepthook = excepthook
