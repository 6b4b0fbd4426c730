"""Shared fixtures: the real demo clips, the offline real classifier, one finished demo run."""

from __future__ import annotations

from pathlib import Path

import pytest

# Small enough for a 2-core CI machine, large enough that every demo clip gets its real verdict.
TEST_FRAMES = 20
TEST_CHUNK = 10
# The scan tests of the CPU and GPU paths: (clip, class queried), the demo's kept (Egyptian cat, espresso)
# and rejected (goldfish, teapot) verdicts; few frames, small chunks (a 2-core CI machine classifies ~3x
# frames x clips frames there).
QUERIES = [("chelsea_cat.mp4", 285), ("coffee_cup.mp4", 967), ("chelsea_cat.mp4", 1), ("coffee_cup.mp4", 849)]
SCAN_FRAMES, SCAN_CHUNK = 12, 4


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    from videonet.curation.search.demo import build_demo_catalog

    directory = tmp_path_factory.mktemp("demo")
    build_demo_catalog(directory)
    return directory


@pytest.fixture
def one_thread():
    """One torch intra-op thread: on a busy 2-core machine OpenMP spinning makes more threads far slower.
    The torch-heavy modules use it for every test (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A curate-style run dir of real short clips, shared by the VITO data and training tests."""
    from vito_clips import session_shards

    return session_shards(tmp_path_factory)


@pytest.fixture(scope="session")
def lite0():
    from videonet.curation.judge.classifier import load_classifier

    return load_classifier("efficientnet-lite0", device="cpu")


def curate_options(out: Path, demo_dir: Path, **overrides):
    """``(out, settings)`` of a demo run with the offline classifier and few frames: ``curate(*curate_options(...))``."""
    from videonet.curation.settings import CurateSettings

    settings = dict(source="demo", demo_dir=str(demo_dir), classifier="efficientnet-lite0",
                    device="cpu", frames=TEST_FRAMES, chunk=TEST_CHUNK, progress=False, shard_size=2)
    settings.update(overrides)
    return str(out), CurateSettings.of(**settings)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, demo_dir):
    """One complete demo curation (DirectRunner), shared by the end-to-end tests."""
    from videonet.curation.run import curate

    out = tmp_path_factory.mktemp("run") / "demo"
    facts = curate(*curate_options(out, demo_dir))
    return out, facts


@pytest.fixture(scope="session")
def kit(demo_dir, tmp_path_factory):
    """The fault catalog of ``tests/faultkit.py`` and its local server (shared by the fault and Flink tests)."""
    import time

    import faultkit

    www = tmp_path_factory.mktemp("www")
    base, stop = faultkit.serve(www)
    started = time.monotonic()
    built = faultkit.build(tmp_path_factory.mktemp("faults"), demo_dir, base, www)
    print(f"\nfault catalog built: {time.monotonic() - started:.1f} s")
    yield built
    stop()


@pytest.fixture(scope="session")
def clean_run(kit, tmp_path_factory):
    """The good clips of the fault catalog, curated once on the DirectRunner: what every other run must match."""
    import time

    import faultkit
    from videonet.curation.run import curate

    out = tmp_path_factory.mktemp("clean") / "run"
    started = time.monotonic()
    curate(*faultkit.options(out, kit, kit.clean, faultkit.GOOD_CLASSES))
    print(f"\nclean run: {time.monotonic() - started:.1f} s")
    return out


def cut_after_moov(source, whole: Path) -> bytes:
    """``source`` (a path or a file object) remuxed to ``whole`` with its index first ('faststart'), then
    cut in half: a file whose header promises frames its body lacks (decoders fail at the cut)."""
    import av

    with av.open(source) as src, av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return whole.read_bytes()[:whole.stat().st_size // 2]
