"""A successful job on a portable runner ends without the data plane's hang-up traceback, and nothing
else that goes wrong there is hidden."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

import pytest

from videonet.quiet import DATA_PLANE_LOGGER, DATA_PLANE_READER, SDK_HARNESS, STATE_READER, quiet_data_plane_hang_up


class Rendezvous(Exception):
    """Stands in for gRPC's stream error: what Beam's reader gets when the job server closes the stream."""


HANG_UP = Rendezvous('<_MultiThreadedRendezvous of RPC that terminated with: status = StatusCode.CANCELLED '
                     'details = "Multiplexer hanging up">')
OTHER = Rendezvous('<_MultiThreadedRendezvous of RPC that terminated with: status = StatusCode.UNAVAILABLE '
                   'details = "Socket closed">')


@pytest.fixture
def quiet(monkeypatch):
    logger = logging.getLogger(DATA_PLANE_LOGGER)
    monkeypatch.setattr(logger, "filters", [])
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    quiet_data_plane_hang_up()
    quiet_data_plane_hang_up()  # idempotent
    return logger


def _log(logger, exc):
    try:
        raise exc
    except Rendezvous:
        logger.exception("Failed to read inputs in the data plane.")


def test_the_hang_up_is_dropped_at_its_logger_and_other_errors_are_not(quiet, caplog):
    assert len(quiet.filters) == 1
    with caplog.at_level(logging.ERROR, logger=DATA_PLANE_LOGGER):
        _log(quiet, HANG_UP)
        _log(quiet, OTHER)
        logging.getLogger("apache_beam.other").error("unrelated", exc_info=HANG_UP)
    assert [(r.name, r.exc_info[1]) for r in caplog.records] == [(DATA_PLANE_LOGGER, OTHER), ("apache_beam.other", HANG_UP)]


THREADS = """
import threading
from videonet.quiet import DATA_PLANE_READER, SDK_HARNESS, STATE_READER, quiet_data_plane_hang_up

class Rendezvous(Exception):
    pass

RESET = "Stream removed (RST_STREAM (Received RST_STREAM with error code 8))"
quiet_data_plane_hang_up()
for status, details, name in [
        ("CANCELLED", "Multiplexer hanging up", DATA_PLANE_READER),
        ("CANCELLED", "Multiplexer hanging up", SDK_HARNESS + "1-1"),
        ("CANCELLED", "Socket closed", DATA_PLANE_READER), ("CANCELLED", "Socket closed", SDK_HARNESS + "1-2"),
        ("CANCELLED", "Multiplexer hanging up", "another-thread"),
        ("CANCELLED", RESET, STATE_READER), ("UNAVAILABLE", "Socket closed", STATE_READER)]:
    def reader(status=status, details=details):
        raise Rendezvous(f"status = StatusCode.{status} details = {details!r}")
    thread = threading.Thread(target=reader, name=name)
    thread.start()
    thread.join()
"""


def test_beam_worker_threads_end_silently_on_the_hang_up_only():
    """The data plane's, the SDK harness's and the state reader's threads die silently of the job's end only.
    In a fresh interpreter, as Python prints a thread's death (pytest replaces that hook in-process)."""
    done = subprocess.run([sys.executable, "-c", THREADS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    deaths = [line for line in done.stderr.splitlines() if line.startswith("Exception in thread")]
    assert deaths == [f"Exception in thread {DATA_PLANE_READER}:", f"Exception in thread {SDK_HARNESS}1-2:",
                      "Exception in thread another-thread:", f"Exception in thread {STATE_READER}:"], done.stderr
    assert done.stderr.count("Socket closed") == 3 and done.stderr.count("Multiplexer hanging up") == 1
    assert "RST_STREAM" not in done.stderr  # the state stream reset at the job's end
