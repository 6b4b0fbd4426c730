"""End to end on the DirectRunner: real demo clips, the real offline classifier, real outputs."""

from __future__ import annotations

import pytest

import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import webdataset as wds

from conftest import curate_options
from videonet.curation.rundir.files import read_audit, read_metadata, shard_paths


def _row(audit: pd.DataFrame, ident: str, wnid: str) -> pd.Series:
    rows = audit[(audit["id"] == ident) & (audit["wnid"] == wnid) & (audit["status"] != "duplicate")]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def _status(audit: pd.DataFrame, ident: str, wnid: str) -> str:
    return _row(audit, ident, wnid)["status"]


@pytest.mark.slow
def test_every_outcome_of_the_demo(demo_run):
    out, _ = demo_run
    audit = read_audit(str(out))
    assert _status(audit, "demo-cat", "n02124075") == "kept"  # titled Egyptian cat, the classifier agrees
    assert _status(audit, "demo-cat-as-goldfish", "n01443537") == "rejected_by_classifier"
    assert _status(audit, "demo-coffee", "n07920052") == "kept"  # espresso
    assert _status(audit, "demo-coffee-as-teapot", "n04398044") == "rejected_by_classifier"
    assert _status(audit, "demo-cat-short", "n02123045") == "too_short"  # from catalog metadata
    assert "from metadata" in _row(audit, "demo-cat-short", "n02123045")["reason"]
    probed = _row(audit, "demo-bunny", "n02326432")  # hare; no duration in the catalog
    assert probed["status"] == "too_short" and "probed" in probed["reason"]
    assert _status(audit, "demo-broken", "n02123045") == "decode_error"
    assert set(audit[audit["id"] == "demo-cat-videos"]["status"]) == {"title_mismatch"}
    # bikes.mp4 lasts exactly 10.0 s: it passes the duration rule and reaches the classifier.
    assert _status(audit, "demo-bikes", "n03792782") in {"kept", "rejected_by_classifier"}
    assert audit["reason"].str.len().min() > 0


@pytest.mark.slow
def test_counts_agree_across_metadata_shards_audit_and_report(demo_run):
    out, facts = demo_run
    audit, metadata = read_audit(str(out)), read_metadata(str(out))
    kept_audit = audit[audit["status"] == "kept"]
    samples = list(wds.WebDataset([str(p) for p in shard_paths(str(out))], shardshuffle=False))
    assert len(samples) == len(metadata) == len(kept_audit) == facts["kept"] >= 2
    assert sorted(s["__key__"] for s in samples) == sorted(metadata["key"])
    for sample in samples:
        meta = json.loads(sample["json"])
        row = metadata[metadata["key"] == sample["__key__"]].iloc[0]
        assert meta["id"] == row["id"] and meta["shard"] == row["shard"]
        assert sample["mp4"][4:8] == b"ftyp"  # a real mp4 container
        assert meta["matched_frames"] >= 1 and 0 <= meta["first_match"] < meta["frames_classified"]
    report = pd.read_csv(out / "report" / "retention.csv")
    assert report["kept"].sum() == len(metadata)
    assert report["candidates"].sum() == audit["wnid"].notna().sum()
    assert facts["by_status"]["kept"] == len(metadata)
    assert pq.read_table(out / "report" / "retention.parquet").num_rows == len(report)
    html = (out / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "Egyptian cat" in html


@pytest.mark.slow
def test_shards_respect_shard_size(demo_run):
    out, _ = demo_run
    metadata = read_metadata(str(out))
    assert metadata.groupby("shard").size().max() <= 2  # the fixture's --shard-size


@pytest.mark.slow
def test_rerun_resumes_and_writes_nothing_twice(demo_run, demo_dir, tmp_path):
    import shutil

    from videonet.curation.run import curate

    out, _ = demo_run
    copy = tmp_path / "again"
    shutil.copytree(out, copy)
    before_meta, before_audit = read_metadata(str(copy)), read_audit(str(copy))
    facts = curate(*curate_options(copy, demo_dir))
    after_meta, after_audit = read_metadata(str(copy)), read_audit(str(copy))
    assert len(after_meta) == len(before_meta) and facts["kept"] == len(before_meta)
    assert len(after_audit) == len(before_audit)
    assert after_meta["key"].is_unique


@pytest.mark.slow
def test_interrupted_commit_is_recovered_without_duplicates(demo_run, demo_dir, tmp_path):
    """A shard tar whose metadata never landed (a kill mid-commit) is removed and redone."""
    import shutil

    from videonet.curation.run import curate

    out, _ = demo_run
    copy = tmp_path / "killed"
    shutil.copytree(out, copy)
    meta_files = sorted((copy / "metadata").glob("*.parquet"))
    lost = pd.read_parquet(meta_files[0])
    meta_files[0].unlink()  # as if the process died between the tar rename and the metadata rename
    (copy / "shards" / "stray.tar.tmp").write_bytes(b"partial")
    facts = curate(*curate_options(copy, demo_dir))
    metadata = read_metadata(str(copy))
    assert sorted(metadata["id"]) == sorted(read_metadata(str(out))["id"])
    assert metadata["key"].is_unique and facts["kept"] == len(metadata)
    assert set(lost["key"]) <= set(metadata["key"])
    assert not list((copy / "shards").glob("*.tmp"))
    assert len(list(wds.WebDataset([str(p) for p in shard_paths(str(copy))], shardshuffle=False))) == len(metadata)


@pytest.mark.slow
def test_catalog_videos_on_a_remote_filesystem_are_read_through_beam(demo_dir, tmp_path, monkeypatch):
    """A catalog naming ``vntest://`` videos (a non-local Beam filesystem, like gs://): kept clips are
    fetched, judged and written into shards from there; a missing one is a download_error naming it."""
    import shutil

    import remotefs
    from videonet.curation.run import curate

    monkeypatch.setenv(remotefs.ROOT_ENV, str(tmp_path / "bucket"))
    (tmp_path / "bucket" / "clips").mkdir(parents=True)
    for name in ("chelsea_cat.mp4", "coffee_cup.mp4"):
        shutil.copyfile(demo_dir / name, tmp_path / "bucket" / "clips" / name)
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame([
        {"id": "cat", "title": "Egyptian cat at home", "path": remotefs.url("clips/chelsea_cat.mp4")},
        {"id": "cup", "title": "my espresso", "path": remotefs.url("clips/coffee_cup.mp4")},
        {"id": "gone", "title": "espresso gone", "path": remotefs.url("clips/deleted.mp4")},
    ]).to_csv(catalog, index=False)
    out = tmp_path / "run"
    curate(*curate_options(out, demo_dir, source=f"catalog:{catalog}", catalog_root=remotefs.url("clips"),
                           classes="n02124075,n07920052"))
    audit, metadata = read_audit(str(out)), read_metadata(str(out))
    assert sorted(metadata["id"]) == ["cat", "cup"]
    gone = _row(audit, "gone", "n07920052")
    assert gone["status"] == "download_error" and "vntest://clips/deleted.mp4" in gone["reason"]
    samples = {s["__key__"]: s for s in wds.WebDataset([str(p) for p in shard_paths(str(out))], shardshuffle=False)}
    by_id = dict(zip(metadata["id"], metadata["key"]))
    assert samples[by_id["cat"]]["mp4"] == (demo_dir / "chelsea_cat.mp4").read_bytes()


@pytest.mark.slow
def test_a_video_of_two_classes_is_kept_once_under_the_class_top1_on_the_most_frames(demo_dir, lite0, tmp_path):
    """A real clip cutting between the cat and the coffee photo passes both Egyptian cat and espresso."""
    import skimage.data

    from conftest import TEST_FRAMES
    from videonet.curation.judge.frames import iter_frames
    from videonet.curation.run import curate
    from videonet.curation.search.demo import pan_zoom_frames, write_clip

    cat, cup = (list(pan_zoom_frames(getattr(skimage.data, name)(), 12.0)) for name in ("chelsea", "coffee"))
    clip = tmp_path / "cat_and_cup.mp4"
    write_clip(clip, [cat[i] if i % 5 < 3 else cup[i] for i in range(len(cat))])  # 3 cat frames, 2 cup frames
    classes = {285: "n02124075", 967: "n07920052"}
    top1 = lite0.top1(np.stack(list(iter_frames(str(clip), TEST_FRAMES))))[0].tolist()
    counts = {c: top1.count(c) for c in classes}
    assert all(counts.values()), f"the clip must pass both classes to test the rule: {top1}"
    winner = max(sorted(counts), key=lambda c: counts[c])  # most frames; max keeps the first (lower) on ties
    loser = ({285, 967} - {winner}).pop()
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame([{"id": "both", "title": "Egyptian cat and my espresso", "path": str(clip)}]).to_csv(catalog, index=False)
    for multi in (False, True):
        out = tmp_path / f"multi-{multi}"
        curate(*curate_options(out, demo_dir, source=f"catalog:{catalog}", classes=",".join(classes.values()),
                               multi_label=multi))
        audit, metadata = read_audit(str(out)), read_metadata(str(out))
        assert list(metadata["class_index"]) == [winner] and metadata["frames_classified"].iloc[0] == TEST_FRAMES
        assert len(list(wds.WebDataset([str(p) for p in shard_paths(str(out))], shardshuffle=False))) == 1
        if multi:
            assert list(metadata["labels"].iloc[0]) == [winner, loser]
            assert sorted(audit[audit["status"] == "kept"]["class_index"]) == [285, 967]
        else:
            assert list(metadata["labels"].iloc[0]) == [winner]
            moved = _row(audit, "both", classes[loser])
            assert moved["status"] == "kept_for_other_class" and classes[winner] in moved["reason"]


@pytest.mark.slow
def test_keep_rule_boundaries_on_real_clips(demo_dir, lite0, tmp_path):
    """At the paper's defaults (first 100 frames, clips of at least 10 s): one cat frame among coffee frames
    keeps a clip at the 1st and at the 100th frame, not at the 101st; a clip of exactly 10.0 s is judged,
    one of 9.9 s is too short (probed: the catalog gives no duration)."""
    import skimage.data

    from videonet.curation.judge.frames import iter_frames, probe
    from videonet.curation.judge.verdicts import JudgeSettings
    from videonet.curation.run import curate
    from videonet.curation.search.demo import pan_zoom_frames, write_clip

    cat = next(pan_zoom_frames(skimage.data.chelsea(), 1.0))
    cup = list(pan_zoom_frames(skimage.data.coffee(), 12.0))
    clips = {"first": (0, 120), "hundredth": (99, 100), "hundred_first": (100, 120), "short": (0, 99)}
    rows = []
    for name, (at, length) in clips.items():
        path = tmp_path / f"{name}.mp4"
        write_clip(path, [cat if i == at else cup[i] for i in range(length)])
        rows.append({"id": name, "title": f"Egyptian cat {name}", "path": str(path)})
        top1 = lite0.top1(np.stack(list(iter_frames(str(path), 101))))[0].tolist()
        assert [i for i, label in enumerate(top1) if label == 285] == [at], (name, top1)  # the test's premise
    assert probe(str(tmp_path / "hundredth.mp4")).duration == 10.0
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame(rows).to_csv(catalog, index=False)
    out = tmp_path / "run"
    curate(*curate_options(out, demo_dir, source=f"catalog:{catalog}", classes="n02124075",
                           frames=JudgeSettings().frames, chunk=JudgeSettings().chunk))
    audit, metadata = read_audit(str(out)), read_metadata(str(out)).set_index("id")
    assert sorted(metadata.index) == ["first", "hundredth"]
    assert (metadata.loc["first", "first_match"], metadata.loc["hundredth", "first_match"]) == (0, 99)
    assert (metadata["matched_frames"] == 1).all()
    assert _status(audit, "hundred_first", "n02124075") == "rejected_by_classifier"
    assert "never top-1 in 100 frames" in _row(audit, "hundred_first", "n02124075")["reason"]
    assert _status(audit, "short", "n02124075") == "too_short"
