"""The curation wing's seams: settings generated into the CLI, run state kept out of them, typed
judge results through the scan cache, the source and classifier registries, a dry run that writes nothing."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from videonet.cli import app
from videonet.curation.judge.verdicts import (
    FetchFailed, Scanned, TooShort, Undecodable, decode_result, encode_result, verdict_rows,
)
from videonet.curation.settings import CurateSettings, option_fields, sections_of
from videonet.curation.search import SearchSettings, make_source
from videonet.errors import UserError


def _parse(*args: str) -> dict:
    """What the real ``videonet curate`` command line parses ``args`` into (click's own parser)."""
    command = typer.main.get_command(app).commands["curate"]
    params = command.make_context("curate", ["--out", "somewhere", *args]).params
    settings = {f.name for _, f, _ in option_fields()}  # the generated options, not the command's own
    return {k: v for k, v in params.items() if k in settings}


def test_the_command_line_defaults_are_the_stage_defaults():
    assert CurateSettings.of(**_parse()) == CurateSettings()


def test_each_option_reaches_its_stage():
    settings = CurateSettings.of(**_parse("--per-class", "7", "--no-progress", "--compile", "--weights", "w.pth",
                                          "--download-timeout", "5", "--classes", "1,2"))
    assert settings.candidates.per_class == 7
    assert settings.runner.progress is False and settings.classifier.compile is True
    assert settings.classifier.weights == "w.pth" and settings.fetch.download_timeout == 5.0
    assert settings.vocabulary.classes == "1,2"
    assert settings.judge == CurateSettings().judge  # untouched sections keep their defaults


def test_option_names_are_unique_and_internal_fields_stay_off_the_command_line():
    names = [f.name for _, f, _ in option_fields()]
    assert len(names) == len(set(names))
    assert "socket_timeout" not in names and "retries" not in names
    every = [f.name for _, section in sections_of(CurateSettings) for f in dataclasses.fields(section)]
    assert set(names) < set(every)


@pytest.mark.parametrize("flat, message", [
    ({"per_class": 0}, "--per-class must be at least 1"),
    ({"min_duration": -0.5}, "--min-duration must not be negative"),
    ({"clip_batch": 0}, "--clip-batch must be at least 1"),
    ({"search_page": 0}, "--search-page must be at least 1"),
])
def test_values_below_a_minimum_are_one_line_errors(flat, message):
    CurateSettings.of(**{k: 1 if k != "min_duration" else 0.0 for k in flat})  # the boundary itself is fine
    with pytest.raises(UserError, match=message):
        CurateSettings.of(**flat)


def test_unknown_settings_are_refused():
    with pytest.raises(TypeError, match="per_klass"):
        CurateSettings.of(per_klass=3)


def test_sources_come_from_the_registry(tmp_path):
    assert make_source(SearchSettings(source="youtube", search_template="ytsearch{n}:{term}")).template == "ytsearch{n}:{term}"
    demo = make_source(SearchSettings(source="demo", demo_dir=str(tmp_path / "demo")))
    assert demo.name == "demo" and not (tmp_path / "demo").exists()  # nothing built until a run starts
    for bad in ("vimeo", "catalog", "catalog:", "demo:x"):
        with pytest.raises(UserError, match="--source"):
            make_source(SearchSettings(source=bad))


@pytest.mark.parametrize("result", [
    Undecodable("no video stream", (285,)),
    Undecodable("corrupt video stream after 3 frames", (285, 967), 12.0, 10.0),
    TooShort(5.0, 10.0, (285,)),
    Scanned(12.0, 10.0, (285,), (1, 285, 285), (0.5, 0.25, 0.125), 4, False),
])
def test_judge_results_round_trip_through_the_scan_cache(result):
    assert decode_result(encode_result(result)) == result


def test_a_cache_file_of_another_format_is_scanned_again():
    assert decode_result(b'{"top1": [1], "scores": [0.5], "error": null, "exhausted": false}') is None
    assert decode_result(b'{"kind": "Scanned", "top1": [1]}') is None  # fields missing


def test_verdict_rows_come_from_the_typed_result():
    cat = {"wnid": "n02124075", "class_index": 285, "name": "Egyptian cat", "id": "v1", "title": "cat"}
    cup = {**cat, "wnid": "n07920052", "class_index": 967, "name": "espresso"}
    scanned = Scanned(12.0, 10.0, (285, 967), (1, 285), (0.5, 0.75), 2, False)
    kept, rejected = verdict_rows([cat, cup], scanned, None, 10.0)
    assert (kept["first_match"], kept["matched_frames"], kept["top1_score"], kept["duration"]) == (1, 1, 0.75, 12.0)
    assert rejected["status"] == "rejected_by_classifier" and "never top-1 in 2 frames" in rejected["reason"]
    assert [r["status"] for r in verdict_rows([cat], FetchFailed("HTTP Error 404"), None, 10.0)] == ["download_error"]
    assert verdict_rows([cat], TooShort(9.5, 10.0, (285,)), None, 10.0)[0]["reason"] == "duration 9.50 s < 10 s (probed)"


def test_the_local_runner_is_the_fn_api_runner_and_keeps_its_flags():
    """Beam's DirectRunner falls back to its slow legacy runner for this graph (GroupIntoBatches'
    processing-time timer); videonet names the FnApiRunner, and the DirectRunner's flags still reach it.
    Any other runner name is Beam's to resolve, the legacy one included when asked for by name."""
    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from videonet.pipelines.runners import new_pipeline

    local = new_pipeline(CurateSettings.of(beam_args=("--direct_num_workers=2",)))
    assert isinstance(local.runner, FnApiRunner)
    assert local.options.view_as(DirectOptions).direct_num_workers == 2
    named = new_pipeline(CurateSettings.of(runner="BundleBasedDirectRunner"))
    assert isinstance(named.runner, BundleBasedDirectRunner)
