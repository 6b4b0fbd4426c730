"""Real photos (scikit-image's samples) as pan-and-zoom training clips and held-out labelled crops.

A camera slowly moves and zooms across each photo: that video is the photo's training clip. The
labelled crops, whose class is their photo, are new images of the filmed scenes: closer views than
any frame (a square of 20-45% of the photo's short side, where frames show 50-100%), at random
places (the camera's straight path leaves parts of the photo unfilmed), half of them mirrored.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import webdataset as wds
from PIL import Image

# Colour and greyscale photos with distinct content (two greyscale: colour alone cannot separate them).
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "camera", "coins")
FPS = 25
FRAME_SCALE = (0.5, 1.0)  # side of a clip's first and last window, as a fraction of the photo's short side
CROP_SCALE = (0.2, 0.45)  # side of a labelled crop, same unit


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """The sample photo as ``(H, W, 3)`` uint8 RGB (greyscale photos repeated over 3 channels); read once per process."""
    from skimage import data

    image = getattr(data, name)()
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]


def random_window(h: int, w: int, side: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly placed ``side`` x ``side`` window inside ``h`` x ``w``."""
    return int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))


def pan_frames(image: np.ndarray, seconds: float, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A camera moving in a straight line between two random windows, zooming between their sizes.

    Consecutive frames overlap heavily (slow, natural motion) while frames a second or two apart
    show different parts at different scales, the change VITO's multi-frame views learn from.
    """
    h, w = image.shape[:2]
    sides = [int(min(h, w) * rng.uniform(*FRAME_SCALE)) for _ in range(2)]
    corners = [random_window(h, w, side, rng) for side in sides]
    count = int(round(seconds * FPS))
    frames = []
    for i in range(count):
        a = i / (count - 1)
        side = round((1 - a) * sides[0] + a * sides[1])
        top = min(round((1 - a) * corners[0][0] + a * corners[1][0]), h - side)
        left = min(round((1 - a) * corners[0][1] + a * corners[1][1]), w - side)
        window = Image.fromarray(image[top:top + side, left:left + side])
        frames.append(np.asarray(window.resize((size, size), Image.BICUBIC)))
    return frames


def encode(frames: list[np.ndarray]) -> bytes:
    """MPEG-4 Part 2 mp4, a keyframe a second: ffmpeg's own encoder, which gives identical bytes on every run.

    libx264 does not here (a clip in a few decodes to different pixels from run to run, even on one
    thread), and a 30-step run is sensitive enough to its data that the test's numbers would drift.
    """
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = FPS
        stream.bit_rate = 1_000_000  # the default (~200 kb/s) leaves visible blocks at 96 px
        stream.codec_context.thread_count = 1
        for array in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()


def write_clip_shards(root: Path, seconds: float = 5.0, size: int = 96, seed: int = 0) -> Path:
    """A curate-style run dir ``root`` with one shard holding one pan clip per photo; returns ``root``."""
    rng = np.random.default_rng(seed)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(root / "shards" / "shard-000000.tar")) as sink:
        for index, name in enumerate(PHOTOS):
            frames = pan_frames(photo(name), seconds, size, rng)
            meta = {"id": name, "wnid": f"n{index:08d}", "class_index": index, "name": name,
                    "duration": len(frames) / FPS, "fps": FPS}
            sink.write({"__key__": name, "mp4": encode(frames), "json": json.dumps(meta).encode()})
    return root


def write_crops(root: Path, per_class: int = 24, size: int = 80, seed: int = 0) -> Path:
    """ImageFolder ``root/{train,val}/<photo>/NNN.png``: independent random crops for the kNN bank and queries."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for name in PHOTOS:
            image = photo(name)
            h, w = image.shape[:2]
            out = root / split / name
            out.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                side = int(min(h, w) * rng.uniform(*CROP_SCALE))
                top, left = random_window(h, w, side, rng)
                crop = Image.fromarray(image[top:top + side, left:left + side]).resize((size, size), Image.BICUBIC)
                if rng.random() < 0.5:
                    crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
                crop.save(out / f"{i:03d}.png")
    return root
