"""Resuming a finished run is cheap: its classes are not searched again unless the settings or terms changed."""

from __future__ import annotations

import pytest

import shutil

import pandas as pd

from conftest import curate_options
from videonet.curation.rundir.files import read_audit, read_metadata

CAT = "n02124075"  # Egyptian cat


@pytest.mark.slow
def test_resuming_a_finished_run_searches_nothing_again(demo_run, demo_dir, tmp_path, capsys):
    from videonet.curation.run import curate

    finished, facts = demo_run
    out = tmp_path / "again"
    shutil.copytree(finished, out)
    searched = sorted(p.name for p in (out / "search").iterdir())
    capsys.readouterr()
    again = curate(*curate_options(out, demo_dir))
    assert "1000 classes finished by an earlier run with these settings are not searched again" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "search").iterdir()) == searched  # no search ran: no new facts
    pd.testing.assert_frame_equal(read_audit(str(out)), read_audit(str(finished)))
    pd.testing.assert_frame_equal(read_metadata(str(out)), read_metadata(str(finished)))
    assert again == facts

    curate(*curate_options(out, demo_dir, per_class=3))  # other candidates: every class is searched again
    assert "not searched again" not in capsys.readouterr().out
    assert len([p for p in (out / "search").iterdir() if p.suffix == ".parquet"]) == 2


def test_final_rows_keep_each_candidates_latest_run():
    """What a rerun decided again supersedes the older row; a class that one run audited stays whole
    (its duplicate rows included) without the per-candidate grouping."""
    from videonet.curation.rundir.files import final_rows

    audit = pd.DataFrame([
        ("r1", "a", "v1", "too_short"), ("r1", "a", "v1", "duplicate"),  # one run: both rows stay
        ("r1", "b", "v2", "download_retriable"), ("r2", "b", "v2", "kept"),  # redone by r2: r2's row
        ("r1", "b", "v3", "rejected_by_classifier"),  # settled by r1, not redone: stays
        (None, "c", "v4", "download_error"), ("r1", "c", "v4", "kept"),  # a row without run id comes first
        ("r2", None, "row:3", "invalid_catalog_row"),  # no class
    ], columns=["run_id", "wnid", "id", "status"])
    assert list(final_rows(audit).index) == [0, 1, 3, 4, 6, 7]
    assert final_rows(audit.iloc[:0]).empty


@pytest.mark.slow
def test_rows_appended_to_a_catalog_after_a_finished_run_are_judged_by_the_rerun(demo_dir, tmp_path, capsys):
    """The finished marks cover the catalog's digest: a grown catalog is searched again, the new rows
    are judged, and the resume join judges no old row twice."""
    from videonet.curation.run import curate

    root, out = tmp_path / "root", tmp_path / "run"
    root.mkdir()
    shutil.copyfile(demo_dir / "chelsea_cat.mp4", root / "cat.mp4")
    shutil.copyfile(demo_dir / "chelsea_cat.mp4", root / "cat_again.mp4")
    catalog = root / "catalog.csv"
    catalog.write_text("id,title,path,duration\nfirst,Egyptian cat at home,cat.mp4,12\n")
    options = curate_options(out, demo_dir, source=f"catalog:{catalog}", catalog_root=str(root), classes=CAT)
    curate(*options)
    first = read_audit(str(out))
    assert list(first["id"]) == ["first"] and list(first["status"]) == ["kept"]
    capsys.readouterr()

    with catalog.open("a") as fh:
        fh.write("second,Egyptian cat on the sofa,cat_again.mp4,12\n")
    curate(*options)
    assert "not searched again" not in capsys.readouterr().out  # the catalog changed: searched again
    audit, metadata = read_audit(str(out)), read_metadata(str(out))
    assert sorted(metadata["id"]) == ["first", "second"] and metadata["key"].is_unique
    assert sorted(audit["id"]) == ["first", "second"]  # one row each: the first was not judged again
    assert audit.set_index("id").loc["first", "run_id"] == first["run_id"].iloc[0]
    assert audit.set_index("id").loc["second", "run_id"] != first["run_id"].iloc[0]

    curate(*options)  # unchanged since: finished, nothing searched
    assert "1 classes finished by an earlier run with these settings are not searched again" in capsys.readouterr().out
    pd.testing.assert_frame_equal(read_audit(str(out)), audit)


@pytest.mark.slow
def test_a_row_whose_path_changed_is_judged_again_unless_it_was_kept(demo_dir, tmp_path):
    """A verdict speaks for the video it was given at: the rerun judges a row whose file changed (a
    rejected one becomes kept); a kept row stays kept, once (its clip is in a shard already)."""
    from videonet.curation.run import curate
    from videonet.curation.rundir.files import final_rows

    root, out = tmp_path / "root", tmp_path / "run"
    root.mkdir()
    for name, clip in (("cat.mp4", "chelsea_cat"), ("cat_again.mp4", "chelsea_cat"), ("cup.mp4", "coffee_cup")):
        shutil.copyfile(demo_dir / f"{clip}.mp4", root / name)
    catalog = root / "catalog.csv"
    catalog.write_text("id,title,path,duration\nfirst,Egyptian cat at home,cat.mp4,12\n"
                       "wrong,Egyptian cat in a cup,cup.mp4,12\n")
    options = curate_options(out, demo_dir, source=f"catalog:{catalog}", catalog_root=str(root), classes=CAT)
    curate(*options)
    before = final_rows(read_audit(str(out))).set_index("id")
    assert before.loc["first", "status"] == "kept" and before.loc["wrong", "status"] == "rejected_by_classifier"

    catalog.write_text("id,title,path,duration\nfirst,Egyptian cat at home,cup.mp4,12\n"  # kept: stays
                       "wrong,Egyptian cat in a cup,cat_again.mp4,12\n")  # rejected: judged again
    curate(*options)
    after = final_rows(read_audit(str(out))).set_index("id")
    assert after.loc["wrong", "status"] == "kept" and after.loc["wrong", "run_id"] != before.loc["wrong", "run_id"]
    assert after.loc["first", "status"] == "kept" and after.loc["first", "run_id"] == before.loc["first", "run_id"]
    metadata = read_metadata(str(out))
    assert sorted(metadata["id"]) == ["first", "wrong"] and metadata["key"].is_unique
    assert metadata.set_index("id").loc["wrong", "path"] == str((root / "cat_again.mp4").resolve())
