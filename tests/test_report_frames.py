"""The frames behind the verdicts: thumbnails from the scan, the report's contact sheets, ``videonet
show``, and a quiet start. On the real demo run (tests/conftest.py) with the real offline classifier."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import TEST_CHUNK, TEST_FRAMES, curate_options
from videonet.curation.judge.frames import iter_frames
from videonet.curation.judge.scan import THUMB_PX, scan_clips
from videonet.curation.report.show import show
from videonet.curation.vocabulary.classes import class_name
from videonet.curation.rundir import REJECTED, clip_key
from videonet.curation.rundir.files import read_audit, read_metadata
from videonet.errors import UserError
from videonet.quiet import quiet_optional_extras


def _thumb(out, key: str) -> tuple[Image.Image, dict]:
    folder = out / "report" / "thumbs"
    return Image.open(folder / f"{key}.jpg"), json.loads((folder / f"{key}.json").read_text())


def _videonet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "videonet", *args], capture_output=True, text=True, timeout=120)


def test_scan_keeps_the_first_frame_of_every_label(lite0, demo_dir):
    (scan,) = scan_clips(lite0, [(str(demo_dir / "coffee_cup.mp4"), {849})], TEST_FRAMES, TEST_CHUNK)
    assert set(scan.firsts) == set(scan.top1)  # teapot never top-1: the clip was scanned to the end
    for jpeg in scan.firsts.values():
        assert Image.open(io.BytesIO(jpeg)).size == (THUMB_PX, THUMB_PX)


@pytest.mark.slow
def test_every_kept_and_rejected_verdict_has_its_frame(demo_run, demo_dir):
    out, _ = demo_run
    metadata, audit = read_metadata(str(out)), read_audit(str(out))
    assert len(metadata) >= 2
    for row in metadata.to_dict("records"):
        image, facts = _thumb(out, row["key"])
        assert (facts["label"], facts["frame"]) == (row["class_index"], row["first_match"])
        assert 0 < facts["score"] <= row["top1_score"] + 1e-6
        # The thumbnail is that very frame of the clip, as the filter decoded it.
        frame = list(iter_frames(row["path"], facts["frame"] + 1))[-1]
        expected = np.asarray(Image.fromarray(frame).resize((THUMB_PX, THUMB_PX)), dtype=float)
        assert np.abs(np.asarray(image.convert("RGB"), dtype=float) - expected).mean() < 8
    rejected = audit[audit["status"] == REJECTED].to_dict("records")
    assert rejected
    for row in rejected:  # the frame of what the classifier mostly saw instead, as the reason says
        image, facts = _thumb(out, clip_key(row))
        assert image.size == (THUMB_PX, THUMB_PX)
        assert f"most frequent top-1: {class_name(facts['label'])} ({facts['label']})" in row["reason"]


@pytest.mark.slow
def test_report_links_each_frame_lazily_and_inlines_none(demo_run):
    out, _ = demo_run
    page = (out / "report" / "report.html").read_text()
    images = re.findall(r"<img [^>]*>", page)
    thumbs = [tag for tag in images if 'src="thumbs/' in tag]
    assert len(thumbs) == len(read_metadata(str(out))) + (read_audit(str(out))["status"] == REJECTED).sum()
    for tag in thumbs:
        assert 'loading="lazy"' in tag
        assert (out / "report" / re.search(r'src="([^"]+)"', tag)[1]).is_file()
    assert "data:image/jpeg" not in page and page.count("data:image/") == 1  # only the retention plot
    assert 'id="classes"' in page and "aria-sort" in page  # the table and its script (package data)


@pytest.mark.slow
def test_rerun_keeps_the_thumbnails(demo_run, demo_dir, tmp_path):
    import shutil

    from videonet.curation.run import curate

    out, _ = demo_run
    copy = tmp_path / "again"
    shutil.copytree(out, copy)
    before = {p.name: p.read_bytes() for p in (copy / "report" / "thumbs").iterdir()}
    curate(*curate_options(copy, demo_dir))  # every clip judged from the audit and the scan cache
    assert {p.name: p.read_bytes() for p in (copy / "report" / "thumbs").iterdir()} == before
    assert (copy / "report" / "report.html").read_text().count('src="thumbs/') == len(before) // 2


@pytest.mark.slow
def test_a_run_without_thumbnails_still_reports(demo_run, tmp_path):
    """A run judged before thumbnails existed: placeholders, not broken images."""
    import shutil

    from videonet.curation.report import build_report

    out, _ = demo_run
    copy = tmp_path / "old"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "report" / "thumbs")
    build_report(str(copy))
    page = (copy / "report" / "report.html").read_text()
    assert 'src="thumbs/' not in page and page.count('class="missing"') >= 4
    assert "no frame kept" in show(str(copy), "demo-cat")


@pytest.mark.slow
def test_show_a_class_by_wnid_index_or_name(demo_run):
    out, _ = demo_run
    key = read_metadata(str(out)).set_index("id").loc["demo-cat", "key"]
    view = show(str(out), "Egyptian cat")
    assert view == show(str(out), "n02124075") == show(str(out), "285")
    assert view.startswith("285 n02124075 Egyptian cat\nsearch: exhausted after 1 query (1 request), 4 results read\n"
                           "candidates 4: ")
    assert "kept 1" in view and "demo-cat" in view and f"thumbs/{key}.jpg" in view
    assert re.search(r"frame 0: Egyptian cat \(285\) score 0\.\d\d", view)
    assert re.search(r"shard .*/shards/[^ ]+\.tar  key " + key, view)
    rejected = show(str(out), "teapot")
    assert "rejected by the classifier (1 of 1 shown)" in rejected
    assert "demo-coffee-as-teapot  teapot (849) never top-1" in rejected and "espresso (967) score" in rejected


@pytest.mark.slow
def test_show_a_clip_by_id_or_key(demo_run):
    out, _ = demo_run
    view = show(str(out), "demo-coffee")
    key = clip_key({"wnid": "n07920052", "id": "demo-coffee"})
    assert view == show(str(out), key)
    assert "967 n07920052 espresso: kept: " in view and f"key {key}" in view
    assert view.index(": kept: ") < view.index(": title_mismatch: ")  # verdicts before title drops


@pytest.mark.slow
def test_show_errors_are_one_line(demo_run, tmp_path):
    out, _ = demo_run
    with pytest.raises(UserError, match="no class or clip 'no-such-clip'"):
        show(str(out), "no-such-clip")
    done = _videonet("show", str(tmp_path), "285")
    assert done.returncode == 2
    assert done.stderr == f"error: {tmp_path} is not a curation run directory (no audit/ or metadata/)\n"


def test_a_plain_command_starts_quietly():
    done = _videonet("curate", "--help")
    assert done.returncode == 0 and "--out" in done.stdout
    assert done.stderr == ""  # no 'apitools not found' from Beam's optional GCP import


def test_gcp_commands_still_hear_about_the_missing_extra(caplog):
    root = logging.getLogger()
    before = list(root.filters)
    try:
        assert not quiet_optional_extras(["curate", "--out", "gs://bucket/run"])
        assert not quiet_optional_extras(["curate", "--out", "runs/x", "--runner", "DataflowRunner"])
        assert root.filters == before
        assert quiet_optional_extras(["curate", "--out", "runs/x"])
        with caplog.at_level(logging.WARNING):
            logging.warning("apitools not found, and bigquery client libraries are not available")
            logging.warning("something else")
        assert [r.getMessage() for r in caplog.records] == ["something else"]
    finally:
        root.filters[:] = before
