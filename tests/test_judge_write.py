"""Judge returns, write writes: ``judge_clips`` decides and puts nothing on disk; what it returns says
what the write stage stages, caches and thumbnails, and ``write_judged`` puts exactly that there."""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest

from conftest import TEST_CHUNK, TEST_FRAMES
from localserver import serve
from videonet.curation.judge import JudgeSettings
from videonet.curation.judge.fetch import FetchSettings
from videonet.curation.judge.verdicts import ClipJob, Scanned, decode_result, judge_clips
from videonet.curation.rundir import cache_path, staging_path
from videonet.curation.write.judged import write_judged
from videonet.curation.rundir import thumb_path
from videonet.curation.write.thumbs import read_thumb_facts

CAT = {"wnid": "n02124075", "class_index": 285, "name": "Egyptian cat", "title": "a cat"}
CUP = {"wnid": "n07930864", "class_index": 967, "name": "espresso", "title": "a cup"}


@pytest.fixture(scope="module")
def web(demo_dir, tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    shutil.copy(demo_dir / "coffee_cup.mp4", www / "cup.mp4")
    base, stop = serve(www, [])
    yield base, www
    stop()


def test_the_judge_decides_and_the_write_stage_writes(lite0, demo_dir, web, tmp_path):
    base, www = web
    out = str(tmp_path / "run")
    local = ClipJob("catalog:cat", [{**CAT, "id": "cat", "path": str(demo_dir / "chelsea_cat.mp4")}])
    download = ClipJob("url:cup", [{**CUP, "id": "cup", "url": f"{base}/cup.mp4"}])
    settings = JudgeSettings(frames=TEST_FRAMES, chunk=TEST_CHUNK)
    with ExitStack() as files:
        cat, cup = judge_clips([local, download], lite0, settings, FetchSettings(), 10.0, out, files)
        assert not (tmp_path / "run").exists()  # judging wrote nothing
        assert [("status" in r, r["class_index"]) for r in cat.rows + cup.rows] == [(False, 285), (False, 967)]
        assert cat.stage is None and cup.stage is not None  # a catalog file is read in place; a download is staged
        assert cat.drop is cup.drop is None  # nothing came from the download stage
        assert {t.key for t in cat.thumbs + cup.thumbs} == {r["key"] for r in cat.rows + cup.rows}
        staged = cup.stage
        rows = write_judged(out, cat) + write_judged(out, cup)
    assert rows == cat.rows + cup.rows
    assert cup.rows[0]["path"] == staging_path(out, "url:cup")
    assert Path(staging_path(out, "url:cup")).read_bytes() == (www / "cup.mp4").read_bytes()
    assert not os.path.exists(staged)  # the fetched temp file lived as long as the batch
    for clip in (cat, cup):
        with open(cache_path(out, clip.identity), "rb") as fh:
            assert isinstance(decode_result(fh.read()), Scanned)
    facts = read_thumb_facts(out, [r["key"] for r in rows])
    assert {facts[r["key"]]["label"] for r in rows} == {285, 967}
    assert all(open(thumb_path(out, r["key"]), "rb").read(2) == b"\xff\xd8" for r in rows)  # JPEGs
