"""Shared run directories: one live run per ``--out`` (a lock a killed run does not leave stuck), and a
disk that fills up during a shard commit leaves no half shard, then the rerun completes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import curate_options
from videonet.curation.write.lock import LOCK, STALE_S, hold
from videonet.curation.write.rundir import read_audit, read_metadata
from videonet.errors import UserError


def test_a_second_curate_on_a_held_out_refuses_in_one_line(demo_dir, tmp_path):
    out = tmp_path / "run"
    with hold(str(out)):
        proc = subprocess.run([sys.executable, "-m", "videonet", "curate", "--source", "demo", "--demo-dir",
                               str(demo_dir), "--classes", "n02124075", "--out", str(out)],
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "another live run" in errors[0] and "Traceback" not in proc.stderr
    assert not any(p.name != LOCK for p in out.iterdir())  # the refused run touched nothing
    assert not (out / LOCK).exists()  # released with the run that held it


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from videonet.curation.write.lock import hold\n"
                               f"with hold({str(out)!r}):\n    print('held', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(UserError, match=f"pid {holder.pid}"):
        with hold(str(out)):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with hold(str(out)):  # the kernel dropped the lock with its process
        pass


def test_remote_lock_refuses_a_live_heartbeat_and_takes_over_a_stale_one(tmp_path, monkeypatch):
    import remotefs

    monkeypatch.setenv(remotefs.ROOT_ENV, str(tmp_path))
    out = remotefs.url("bucket/run")
    (tmp_path / "bucket" / "run").mkdir(parents=True)
    lock = tmp_path / "bucket" / "run" / LOCK
    lock.write_text(json.dumps({"host": "worker-7", "pid": 1, "heartbeat": time.time()}))
    with pytest.raises(UserError, match="host worker-7, pid 1"):
        with hold(out):
            pass
    lock.write_text(json.dumps({"host": "worker-7", "pid": 1, "heartbeat": time.time() - STALE_S - 1}))
    with hold(out):
        assert json.loads(lock.read_text())["host"] == socket.gethostname()
    assert not lock.exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 200 KiB tmpfs: room for the audit, not for the demo's shard (about 240 KiB)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and a sandbox that allows it)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.slow
def test_a_full_disk_during_a_shard_commit_leaves_no_half_shard(demo_run, demo_dir, small_disk):
    from videonet.curation.run import curate

    direct, _ = demo_run
    out = small_disk / "run"
    with pytest.raises(Exception, match="No space left on device|Errno 28"):
        curate(*curate_options(out, demo_dir))
    committed = {p.stem for p in (out / "metadata").glob("*.parquet")} if (out / "metadata").exists() else set()
    visible = {p.stem for p in (out / "shards").glob("*.tar")} if (out / "shards").exists() else set()
    assert visible <= committed  # a tar without its metadata would be a half shard; .tmp files are invisible
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    curate(*curate_options(out, demo_dir))
    columns = ["wnid", "id", "status"]
    got = read_audit(str(out))[columns].sort_values(columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, read_audit(str(direct))[columns].sort_values(columns).reset_index(drop=True))
    assert sorted(read_metadata(str(out))["key"]) == sorted(read_metadata(str(direct))["key"])
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
