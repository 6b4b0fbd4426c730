"""Scaling out: the same pipeline under DataflowRunner options, the worker image, multi-process runs."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import apache_beam
import pandas as pd
import pytest

from conftest import curate_options
from videonet.curation.rundir.files import read_audit, read_metadata

ROOT = Path(__file__).resolve().parents[1]
DATAFLOW_FLAGS = [
    "--project=my-project-123", "--region=us-central1", "--temp_location=gs://my-bucket/tmp",
    "--staging_location=gs://my-bucket/staging", "--sdk_container_image=us-docker.pkg.dev/p/videonet/worker:gpu",
    "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
    "--machine_type=g2-standard-8", "--max_num_workers=20",
]


def test_pipeline_graph_builds_with_dataflow_options(demo_dir, tmp_path):
    from videonet.curation.run import dry_run

    options = curate_options(tmp_path / "df", demo_dir, runner="DataflowRunner", beam_args=DATAFLOW_FLAGS,
                             classes="n02124075,n07920052")
    transforms = dry_run(*options)
    assert transforms > 20
    assert not (tmp_path / "df" / "shards").exists()  # nothing ran


def test_dry_run_changes_nothing_on_disk(tmp_path):
    """No recovery of an interrupted run, no demo clips, no run directory: only the graph is built."""
    from videonet.curation.run import dry_run

    out = tmp_path / "interrupted"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "part.tar.tmp").write_bytes(b"half a commit")  # what a real run would recover
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert dry_run(*curate_options(out, tmp_path / "demo-not-built", classes="n02124075")) > 20
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_dry_run_from_the_cli(demo_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "videonet", "curate", "--source", "demo", "--demo-dir", str(demo_dir),
         "--classes", "n02124075", "--out", str(tmp_path / "x"), "--runner", "DataflowRunner", "--dry-run",
         "--", *DATAFLOW_FLAGS], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"pipeline graph for DataflowRunner: \d+ transforms", proc.stdout)


def test_dockerfile_base_image_follows_installed_beam():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    assert args["BEAM_VERSION"] == apache_beam.__version__
    assert args["PY_VERSION"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert "FROM apache/beam_python${PY_VERSION}_sdk:${BEAM_VERSION}" in text
    pinned = re.search(r'"apache-beam==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert pinned == args["BEAM_VERSION"]


@pytest.mark.slow
def test_multi_processing_direct_runner_gives_the_same_result(demo_run, demo_dir, tmp_path):
    from videonet.curation.run import curate

    in_memory, _ = demo_run
    out = tmp_path / "mp"
    facts = curate(*curate_options(out, demo_dir, beam_args=["--direct_num_workers=2",
                                                            "--direct_running_mode=multi_processing"]))
    columns = ["wnid", "id", "status"]
    expected = read_audit(str(in_memory))[columns].sort_values(columns).reset_index(drop=True)
    got = read_audit(str(out))[columns].sort_values(columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    assert sorted(read_metadata(str(out))["key"]) == sorted(read_metadata(str(in_memory))["key"])
    report = pd.read_csv(out / "report" / "retention.csv")
    pd.testing.assert_frame_equal(report, pd.read_csv(in_memory / "report" / "retention.csv"))
    assert facts["kept"] == len(read_metadata(str(in_memory)))


# -- VITO training under torchrun ------------------------------------------------------------------

TRAIN_ARGS = ["--steps", "4", "--batch-size", "4", "--image-size", "32", "--arch", "resnet18", "--proj-hidden", "32",
              "--proj-dim", "16", "--workers", "1", "--shuffle-buffer", "1", "--log-every", "1", "--save-every", "100",
              "--device", "cpu"]


def torchrun(data: Path, out: Path, *extra: str) -> None:
    """``torchrun --nproc_per_node 2 -m videonet train`` as users run it: 2 CPU processes (gloo)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "videonet", "train", str(data), "--out", str(out), *TRAIN_ARGS, *extra]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_rank_shards_are_disjoint_and_cover_the_clips(tmp_path_factory):
    """Each rank (and loader worker) reads its own shards: one epoch of the two ranks is every clip once."""
    from vito_clips import session_shards
    from videonet.vito.data import ClipStream, resolve_shards

    shards = resolve_shards(str(session_shards(tmp_path_factory)))
    epoch = {rank: [raw["__key__"] for _, raw in zip(range(4), ClipStream(shards, rank=rank, world=2)._raw(rank, 2))]
             for rank in (0, 1)}
    assert not set(epoch[0]) & set(epoch[1]) and len(set(epoch[0]) | set(epoch[1])) == 8


@pytest.mark.slow
def test_torchrun_two_processes_train_checkpoint_and_resume(tmp_path_factory, tmp_path):
    import torch

    from vito_clips import session_shards
    from videonet.vito.train import load_checkpoint

    data = session_shards(tmp_path_factory)
    torchrun(data, tmp_path / "straight")
    torchrun(data, tmp_path / "resumed", "--stop-at", "2")
    assert load_checkpoint(tmp_path / "resumed")["step"] == 2
    torchrun(data, tmp_path / "resumed")  # the same command again: resumes at step 2

    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    assert a["step"] == b["step"] == 4
    assert a["data"]["world"] == 2 and a["data"]["batch_size"] == 2  # --batch-size is the global batch
    assert len(a["data"]["positions"]) == 2 and a["data"]["positions"] == b["data"]["positions"]
    for part in ("online", "target"):  # the resumed run saw the same samples in the same order
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    with (tmp_path / "straight" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    # LARS's linear scaling uses the global batch: peak lr 0.3 x 4 / 256 (no warm-up step at 3% of 4 steps).
    assert float(rows[0]["lr"]) == pytest.approx(0.3 * 4 / 256)
    assert (tmp_path / "straight" / "backbone.pt").is_file() and (tmp_path / "resumed" / "backbone.pt").is_file()
