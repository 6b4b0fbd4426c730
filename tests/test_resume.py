"""Resuming a finished run is cheap: its classes are not searched again unless the settings or terms changed."""

from __future__ import annotations

import pytest

import shutil

import pandas as pd

from conftest import curate_options
from videonet.curation.write.rundir import read_audit, read_metadata


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
    from videonet.curation.write.rundir import final_rows

    audit = pd.DataFrame([
        ("r1", "a", "v1", "too_short"), ("r1", "a", "v1", "duplicate"),  # one run: both rows stay
        ("r1", "b", "v2", "download_retriable"), ("r2", "b", "v2", "kept"),  # redone by r2: r2's row
        ("r1", "b", "v3", "rejected_by_classifier"),  # settled by r1, not redone: stays
        (None, "c", "v4", "download_error"), ("r1", "c", "v4", "kept"),  # a row without run id comes first
        ("r2", None, "row:3", "invalid_catalog_row"),  # no class
    ], columns=["run_id", "wnid", "id", "status"])
    assert list(final_rows(audit).index) == [0, 1, 3, 4, 6, 7]
    assert final_rows(audit.iloc[:0]).empty
