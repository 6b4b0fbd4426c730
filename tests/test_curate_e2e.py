"""End to end on the DirectRunner: real demo clips, the real offline classifier, real outputs."""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow.parquet as pq
import webdataset as wds

from conftest import curate_options
from videonet.curation.write.rundir import read_audit, read_metadata, shard_paths


def _row(audit: pd.DataFrame, ident: str, wnid: str) -> pd.Series:
    rows = audit[(audit["id"] == ident) & (audit["wnid"] == wnid) & (audit["status"] != "duplicate")]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def _status(audit: pd.DataFrame, ident: str, wnid: str) -> str:
    return _row(audit, ident, wnid)["status"]


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


def test_shards_respect_shard_size(demo_run):
    out, _ = demo_run
    metadata = read_metadata(str(out))
    assert metadata.groupby("shard").size().max() <= 2  # the fixture's --shard-size


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
