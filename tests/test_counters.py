"""The live counters (Beam Metrics, namespace ``videonet``) read from the pipeline result on the local
runner agree with the tables the same run wrote."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import curate_options


@pytest.mark.slow
def test_counters_equal_the_run_directory(demo_dir, tmp_path):
    from videonet.curation.search import make_source
    from videonet.curation.settings import RunState
    from videonet.curation.vocabulary.classes import parse_classes
    from videonet.curation.rundir import REQUESTS
    from videonet.curation.rundir.files import read_audit, read_metadata
    from videonet.pipelines.counters import read_counters
    from videonet.pipelines.curate import run

    out, settings = curate_options(tmp_path / "run", demo_dir)
    source = make_source(settings.search, settings.client)
    source.prepare()
    state = RunState.new(out)
    counters = read_counters(run(settings, parse_classes(settings.vocabulary.classes), source, state))

    kept = len(read_metadata(out))
    drops = read_audit(out).query("status != 'kept'")["status"].value_counts().to_dict()
    assert kept > 0 and len(drops) >= 3  # the demo keeps clips and drops others for several reasons
    requests = pd.concat([pd.read_parquet(p) for p in (tmp_path / "run" / REQUESTS).glob("*.parquet")])
    tallied = {f"{stage}_{suffix}": int(rows[field].sum()) for stage, rows in requests.groupby("stage")
               for field, suffix in (("requests", "requests"), ("retries", "retries"), ("rate_limited", "429s"))}
    assert tallied["search_requests"] > 0
    assert counters == {"kept": kept, **drops, **{name: n for name, n in tallied.items() if n}}
