"""The curation on Flink: an embedded Flink (``--runner FlinkRunner``, no further flag) and a standalone
cluster (a JobManager and two TaskManagers, SDK workers in processes of their own) give what the
DirectRunner gives, and an SDK worker SIGKILLed mid-run costs nothing once the command is rerun.

The job server and Flink's jars are the ones ``install.sh`` put into the cache.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import faultkit
from test_faults import _snapshot, assert_resumed_like
from videonet.curation.write.rundir import read_audit, read_metadata

AUDIT_COLUMNS = ["wnid", "id", "status"]


def _verdicts(out) -> pd.DataFrame:
    return read_audit(str(out))[AUDIT_COLUMNS].sort_values(AUDIT_COLUMNS).reset_index(drop=True)


def test_flink_runner_defaults_fill_only_what_is_not_given():
    from videonet import flink
    from videonet.curation.run import RunnerSettings

    flags = RunnerSettings(runner="FlinkRunner").beam_flags([])
    assert flags == ["--runner=FlinkRunner", "--flink_master=[local]", f"--flink_version={flink.FLINK_VERSION}",
                     f"--flink_job_server_jar={flink.job_server_jar()}", f"--parallelism={os.cpu_count()}",
                     "--environment_type=LOOPBACK"]
    given = ["--flink_master=jm:8081", "--parallelism=64", "--environment_type=DOCKER"]
    flags = RunnerSettings(runner="FlinkRunner").beam_flags(given)
    assert flags[:4] == ["--runner=FlinkRunner", *given] and len(flags) == 6  # + version and jar, no environment
    assert RunnerSettings().beam_flags(["--direct_num_workers=2"]) == ["--runner=DirectRunner", "--direct_num_workers=2"]


def _curate_cli(*args: str) -> None:
    """``videonet curate ... --runner FlinkRunner`` as a user runs it: its own process (the LOOPBACK SDK
    worker, Beam's gRPC and the job server's JVM stay out of the test process)."""
    proc = subprocess.run([sys.executable, "-m", "videonet", *args, "--runner", "FlinkRunner"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_demo_on_embedded_flink_equals_the_direct_runner(demo_run, demo_dir, tmp_path):
    from conftest import TEST_CHUNK, TEST_FRAMES

    direct, facts = demo_run
    out = tmp_path / "flink"
    _curate_cli("curate", "--out", str(out), "--source", "demo", "--demo-dir", str(demo_dir),
                "--classifier", "efficientnet-lite0", "--device", "cpu", "--frames", str(TEST_FRAMES),
                "--chunk", str(TEST_CHUNK), "--shard-size", "2", "--no-progress")
    pd.testing.assert_frame_equal(_verdicts(out), _verdicts(direct))
    assert sorted(read_metadata(str(out))["key"]) == sorted(read_metadata(str(direct))["key"])
    pd.testing.assert_frame_equal(pd.read_csv(out / "report" / "retention.csv"),
                                  pd.read_csv(direct / "report" / "retention.csv"))
    assert facts["kept"] == len(read_metadata(str(out)))


def test_fault_catalog_on_embedded_flink(kit, clean_run, tmp_path):
    """Every fault ends with the status and reason it gets on the DirectRunner; the good clips as in a clean run."""
    out = tmp_path / "faults"
    _curate_cli(*faultkit.cli_args(out, kit, kit.faults_csv, faultkit.FAULT_CLASSES))
    results, summary = faultkit.check(out, kit, clean_run)
    assert not [r for r in results if not r["ok"]], [r for r in results if not r["ok"]]
    assert summary["kept clips lost"] == summary["clips duplicated"] == summary["crashes"] == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from videonet.flink import Cluster

    with Cluster(tmp_path_factory.mktemp("flink-cluster"), taskmanagers=2) as running:
        yield running


def _sdk_workers() -> list[int]:
    """Pids of the SDK worker processes the TaskManagers started (``python -m videonet.flink boot``)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if b"videonet.flink\0boot" in fh.read():
                    pids.append(int(entry))
        except (OSError, ValueError):
            continue
    return pids


def test_standalone_cluster_survives_a_killed_sdk_worker(kit, clean_run, cluster, tmp_path):
    """Two TaskManagers, each SDK worker a process: one is SIGKILLed while shards are being committed.
    The run fails or finishes; rerunning the same command ends exactly like the uninterrupted DirectRunner run."""
    assert len([name for name in cluster.pids if name.startswith("taskmanager")]) == 2 and cluster.alive()
    expected = _snapshot(clean_run)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "videonet", *faultkit.cli_args(out, kit, kit.clean, faultkit.GOOD_CLASSES),
               "--runner", "FlinkRunner", "--", *cluster.flags]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = None
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        workers = _sdk_workers()
        if workers and (out / "shards").exists() and any((out / "shards").iterdir()):
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.05)
    _, stderr = proc.communicate(timeout=300)
    assert killed is not None or proc.returncode == 0, stderr.decode(errors="replace")[-3000:]
    print(f"SDK worker {killed} killed; the run exited {proc.returncode}")
    assert cluster.alive()  # the TaskManagers outlive their SDK workers

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_resumed_like(out, expected)
