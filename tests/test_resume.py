"""Resuming a finished run is cheap: its classes are not searched again unless the settings or terms changed."""

from __future__ import annotations

import shutil

import pandas as pd

from conftest import curate_options
from videonet.curation.write.rundir import read_audit, read_metadata


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
