"""Shared run directories: one live run per ``--out`` (a lock a killed run does not leave stuck), a
disk that fills up during a shard commit leaves no half shard, then the rerun completes; a damaged or
partly deleted run directory is named in one line by every reader, and ``--repair`` restores what a
clean run holds with nothing written twice; a run that never finished is reported as such."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import TEST_CHUNK, TEST_FRAMES, curate_options
from videonet.curation.rundir import LOCK
from videonet.curation.write.lock import STALE_S, hold
from videonet.curation.rundir.files import final_rows, read_audit, read_metadata, read_shard, shard_paths
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


# A damaged run directory: every reader names the file; --repair restores what a clean run holds.

def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _one_error_line(proc) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return errors[0]


def _demo_cli(out, demo_dir) -> list[str]:
    """The command line of ``curate_options(out, demo_dir)``: the demo run's own settings."""
    return ["curate", "--out", str(out), "--source", "demo", "--demo-dir", str(demo_dir), "--classifier",
            "efficientnet-lite0", "--device", "cpu", "--frames", str(TEST_FRAMES), "--chunk", str(TEST_CHUNK),
            "--shard-size", "2", "--no-progress"]


def _same_as_clean(out, clean, rejudged: bool = False) -> None:
    """The same final audit and kept set as the clean run, every kept clip in exactly one shard, once.

    ``rejudged``: the repair removed audit rows that no file holds again, and the rerun judged those
    candidates again as any resume does, where a video already kept under another class is not
    judged again for this one (``kept_for_other_class``, where the clean run, which judged all of its
    classes together, said ``rejected_by_classifier``); every other status is the clean run's.
    A video is its file here (the demo's catalog rows share files under different ids)."""
    columns = ["wnid", "id", "status"]
    got, want = (final_rows(read_audit(str(d)))[columns].sort_values(columns).reset_index(drop=True)
                 for d in (out, clean))
    if rejudged:  # per candidate, its statuses (its own row, and a 'duplicate' row where it has one)
        got, want = (rows.groupby(["wnid", "id"])["status"].agg(tuple) for rows in (got, want))
        assert set(got.index) == set(want.index)
        moved = [(key, was, now) for key, was, now in zip(want.index, want, got.reindex(want.index)) if was != now]
        clean_audit = read_audit(str(clean)).set_index(["wnid", "id"])["path"]
        kept_videos = set(read_metadata(str(clean))["path"])
        for (wnid, ident), was, now in moved:  # only videos the clean run kept under another class
            assert set(clean_audit.loc[[(wnid, ident)]]) <= kept_videos and now == tuple(sorted(
                "kept_for_other_class" if s == "rejected_by_classifier" else s for s in was)), (wnid, ident, was, now)
    else:
        pd.testing.assert_frame_equal(got, want)
    metadata = read_metadata(str(out))
    assert metadata["key"].is_unique and sorted(metadata["key"]) == sorted(read_metadata(str(clean))["key"])
    held: list[str] = []
    for path in shard_paths(str(out)):
        held += list(read_shard(path))
    assert sorted(held) == sorted(metadata["key"])


@pytest.mark.slow
def test_a_truncated_audit_file_is_named_in_one_line_by_report_show_and_curate(demo_run, demo_dir, tmp_path):
    finished, _ = demo_run
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    drops = sorted((out / "audit").glob("drops-*.parquet"))[0]
    _truncate(drops)
    for command in (["report", str(out)], ["show", str(out), "n02124075"], _demo_cli(out, demo_dir)):
        proc = subprocess.run([sys.executable, "-m", "videonet", *command], capture_output=True, text=True,
                              timeout=600)
        line = _one_error_line(proc)
        assert line.startswith(f"error: {drops}: unreadable Parquet file (") and "--repair" in line, (command, line)


@pytest.mark.slow
def test_repair_restores_what_a_clean_run_holds_and_writes_nothing_twice(demo_run, demo_dir, tmp_path):
    from videonet.curation.run import curate
    from videonet.errors import DamagedRunFile

    clean, _ = demo_run
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    (part,) = [p.stem for p in (out / "metadata").glob("*.parquet")]
    (out / "audit" / f"{part}.parquet").unlink()  # the kept rows: without them the rerun kept the clips twice
    _truncate(sorted((out / "audit").glob("drops-*.parquet"))[0])
    (mark,) = (out / "search").glob("*.finished.json")
    mark.write_text('{"run_id": "x", "settings": ')
    (requests,) = (out / "requests").glob("*.parquet")
    requests.write_bytes(b"")
    thumb = sorted((out / "report" / "thumbs").glob("*.json"))[0]
    thumb.write_text("{not json")
    with pytest.raises(DamagedRunFile, match=rf"^{out}/audit/{part}\.parquet: missing: the kept audit rows of .* "
                                             r"\(and 1 more damaged files\); run the same `videonet curate` command "
                                             r"with --repair"):
        curate(*curate_options(out, demo_dir))
    curate(*curate_options(out, demo_dir), repair=True)
    _same_as_clean(out, clean, rejudged=True)
    assert not thumb.exists() and not thumb.with_suffix(".jpg").exists()  # removed, shown as "no frame"
    assert len(list((out / "search").glob("*.finished.json"))) == 1  # the repaired run finished anew

    _truncate(out / "metadata" / f"{next((out / 'metadata').glob('*.parquet')).stem}.parquet")
    curate(*curate_options(out, demo_dir), repair=True)  # rebuilt from the shard's json members
    _same_as_clean(out, clean, rejudged=True)

    for shard in (out / "shards").glob("*.tar"):
        shard.unlink()
    with pytest.raises(DamagedRunFile, match=r"shards/.*\.tar: missing: the shard of "):
        curate(*curate_options(out, demo_dir))
    curate(*curate_options(out, demo_dir), repair=True)  # rewritten from the catalog's files
    _same_as_clean(out, clean, rejudged=True)


@pytest.mark.slow
def test_the_report_says_when_the_latest_run_never_finished(demo_run, tmp_path):
    from videonet.curation.report import build_report, format_summary

    finished, facts = demo_run
    assert facts["unfinished_run"] is None
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (mark,) = (out / "search").glob("*.finished.json")
    mark.unlink()  # as a run killed before its end leaves it
    partial = build_report(str(out))
    assert partial["unfinished_run"] == mark.name.split(".")[0]
    assert format_summary(partial).splitlines()[0].startswith(f"Incomplete: run {partial['unfinished_run']} started "
                                                              "and never finished")


def test_a_damaged_remote_lock_is_taken_over_as_a_stale_one(tmp_path, monkeypatch):
    import remotefs

    monkeypatch.setenv(remotefs.ROOT_ENV, str(tmp_path))
    out = remotefs.url("bucket/run")
    (tmp_path / "bucket" / "run").mkdir(parents=True)
    lock = tmp_path / "bucket" / "run" / LOCK
    lock.write_text('{"host": "worker-7", "pid": 1, "heartb')  # cut off mid-write
    with hold(out):
        assert json.loads(lock.read_text())["host"] == socket.gethostname()


def test_a_damaged_scan_cache_entry_is_scanned_again():
    from videonet.curation.judge.verdicts import Scanned, decode_result, encode_result

    whole = encode_result(Scanned(12.0, 25.0, (285,), (285, 281), (0.9, 0.8), 2, False))
    assert decode_result(whole) == Scanned(12.0, 25.0, (285,), (285, 281), (0.9, 0.8), 2, False)
    assert decode_result(whole[: len(whole) // 2]) is None and decode_result(b"\xff\xfe") is None
