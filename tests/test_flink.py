"""The curation on Flink: an embedded Flink (``--runner FlinkRunner``, no further flag) and a standalone
cluster (a JobManager and two TaskManagers, SDK workers in processes of their own) give what the
DirectRunner gives, and an SDK worker or a TaskManager SIGKILLed mid-run costs nothing once the command
is rerun.

The job server and Flink's jars are the ones ``install.sh`` put into the cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Callable

import pandas as pd
import pytest

import faultkit
from videonet.curation.rundir.files import read_audit, read_metadata
from videonet.curation.write.shards import PAUSE_BEFORE_MARKER

AUDIT_COLUMNS = ["wnid", "id", "status"]


def _verdicts(out) -> pd.DataFrame:
    return read_audit(str(out))[AUDIT_COLUMNS].sort_values(AUDIT_COLUMNS).reset_index(drop=True)


def test_flink_runner_defaults_fill_only_what_is_not_given():
    from videonet import flink
    from videonet.curation.settings import CurateSettings
    from videonet.pipelines.runners import beam_flags

    flags = beam_flags(CurateSettings.of(runner="FlinkRunner"))
    assert flags == ["--runner=FlinkRunner", "--flink_master=[local]", f"--flink_version={flink.FLINK_VERSION}",
                     f"--flink_job_server_jar={flink.job_server_jar()}", f"--parallelism={os.cpu_count()}",
                     "--environment_type=LOOPBACK"]
    given = ["--flink_master=jm:8081", "--parallelism=64", "--environment_type=DOCKER"]
    flags = beam_flags(CurateSettings.of(given, runner="FlinkRunner"))
    assert flags[:4] == ["--runner=FlinkRunner", *given] and len(flags) == 6  # + version and jar, no environment
    assert beam_flags(CurateSettings.of(["--direct_num_workers=2"])) == ["--runner=DirectRunner", "--direct_num_workers=2"]


@pytest.mark.slow
def test_embedded_flink_gets_a_job_server_for_the_pipeline_only():
    """The embedded Flink's job server (its JVM: the run's largest process) is started for the pipeline
    and stopped when it ends, not kept until the Python process exits; a cluster's flags are left alone."""
    from videonet.curation.settings import CurateSettings
    from videonet.flink import _listening
    from videonet.pipelines.runners import embedded_flink, job_service

    with job_service(CurateSettings.of(runner="FlinkRunner")) as served:
        flag = served.beam_args[-1]
        assert flag.startswith("--job_endpoint=localhost:") and not embedded_flink(served)
        port = int(flag.rsplit(":", 1)[1])
        assert _listening(port)
    assert not _listening(port)
    cluster = CurateSettings.of(["--flink_master=localhost:8081"], runner="FlinkRunner")
    with job_service(cluster) as served:
        assert served is cluster


def _curate_cli(*args: str) -> None:
    """``videonet curate ... --runner FlinkRunner`` as a user runs it: its own process (the LOOPBACK SDK
    worker, Beam's gRPC and the job server's JVM stay out of the test process). It succeeds and prints
    no traceback (the data plane's hang-up at the job's end is not an error)."""
    proc = subprocess.run([sys.executable, "-m", "videonet", *args, "--runner", "FlinkRunner"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]  # a successful job ends quietly


@pytest.mark.slow
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


@pytest.mark.slow
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


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        pid = _parent(pid)
        chain.append(pid)
    return chain


def _killed_mid_commit(command: list[str], out, paused, victim: Callable[[int], int]) -> int:
    """Run ``command`` with the SDK workers pausing before a part's metadata; once one is paused,
    SIGKILL the process ``victim`` names for that worker's pid, and the worker (if still alive: a lost
    machine's processes die with it). Returns the pid killed."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and not paused.exists():
        time.sleep(0.05)
    worker = int(paused.read_text()) if paused.exists() else None
    killed = victim(worker) if worker else None
    if killed:
        os.kill(killed, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert killed is not None, stderr.decode(errors="replace")[-3000:]
    assert set(_shard_parts(out, "shards", ".tar")) - set(_shard_parts(out, "metadata", ".parquet"))
    print(f"{killed} killed; the run exited {proc.returncode}")
    return killed


def _shard_parts(out, directory: str, suffix: str) -> list[str]:
    return [p.name[: -len(suffix)] for p in (out / directory).glob("*" + suffix)] if (out / directory).exists() else []


def _rerun_ends_like(command: list[str], out, expected: dict) -> None:
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    faultkit.assert_resumed_like(out, expected)


def _cluster_command(kit, cluster, out, paused=None) -> list[str]:
    """The fault catalog's good clips on the cluster; with ``paused``, the first SDK worker to commit a
    part pauses before its metadata (:data:`PAUSE_BEFORE_MARKER`, passed through Beam's PROCESS environment)."""
    flags = cluster.flags
    if paused is not None:
        config = json.loads(flags[-1].split("=", 1)[1])
        flags = [*flags[:-1], "--environment_config=" + json.dumps({**config, "env": {
            PAUSE_BEFORE_MARKER: str(paused)}})]
    return [sys.executable, "-m", "videonet", *faultkit.cli_args(out, kit, kit.clean, faultkit.GOOD_CLASSES),
            "--runner", "FlinkRunner", "--", *flags]


@pytest.mark.slow
def test_standalone_cluster_survives_a_killed_sdk_worker(kit, clean_run, cluster, tmp_path):
    """Two TaskManagers, each SDK worker a process: the one committing a shard is SIGKILLed between the
    shard's tar and its metadata. Rerunning the same command ends exactly like the
    uninterrupted DirectRunner run."""
    assert len([name for name in cluster.pids if name.startswith("taskmanager")]) == 2 and cluster.alive()
    out, paused = tmp_path / "killed", tmp_path / "paused"
    killed = _killed_mid_commit(_cluster_command(kit, cluster, out, paused), out, paused, lambda worker: worker)
    assert cluster.alive()  # the TaskManagers outlive their SDK workers
    _rerun_ends_like(_cluster_command(kit, cluster, out), out, faultkit.snapshot(clean_run))


@pytest.mark.slow
def test_standalone_cluster_survives_a_killed_taskmanager(kit, clean_run, cluster, tmp_path):
    """The TaskManager whose SDK worker is committing a shard is SIGKILLed between the shard's tar and
    its metadata (its SDK workers lose their runner). Once the cluster has its TaskManager back
    (``Cluster.revive``: what a supervisor does for a real cluster), rerunning the same command ends
    exactly like the uninterrupted DirectRunner run: nothing lost, nothing twice."""
    out, paused = tmp_path / "tm-killed", tmp_path / "paused"
    managers = {pid: name for name, pid in cluster.pids.items() if name.startswith("taskmanager")}
    killed = _killed_mid_commit(_cluster_command(kit, cluster, out, paused), out, paused,
                                lambda worker: next(pid for pid in _ancestors(worker) if pid in managers))
    assert not cluster.alive() and cluster.revive() == [managers[killed]] and cluster.alive()
    _rerun_ends_like(_cluster_command(kit, cluster, out), out, faultkit.snapshot(clean_run))
