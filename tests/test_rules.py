"""The pure curation rules, edge cases included, without Beam."""

from videonet.curation.candidates import dedup_class, match_title
from videonet.curation.candidates import CandidateSettings, Ranked, dedup_and_cap, duration_verdict, normalize_words, title_match
from videonet.curation.judge.verdicts import keep_decision


def test_title_match_is_whole_word_and_case_insensitive():
    assert title_match("My CAT sleeps", ["cat"]) == "cat"
    assert title_match("Category theory lecture", ["cat"]) is None
    assert title_match("concatenate strings", ["cat"]) is None
    assert title_match("Tabby-cat!!! compilation", ["tabby cat"]) == "tabby cat"
    assert title_match("tabby   cat", ["tabby cat"]) == "tabby cat"


def test_title_match_tolerates_punctuation_and_accents():
    assert title_match("Jack-o'-lantern carving 2024", ["jack-o'-lantern"]) == "jack-o'-lantern"
    assert title_match("Crème brûlée recipe", ["creme brulee"]) == "creme brulee"
    assert title_match("great_white_shark attack", ["great white shark"]) == "great white shark"
    assert normalize_words("  Tabby,Cat  ") == "tabby cat"


def test_title_match_returns_first_matching_term_in_order():
    assert title_match("a tabby cat", ["tabby cat", "tabby"]) == "tabby cat"
    assert title_match("a tabby", ["tabby cat", "tabby"]) == "tabby"
    assert title_match("anything", []) is None
    assert title_match("", ["cat"]) is None


def test_duration_verdict_keeps_exactly_ten_seconds():
    default = CandidateSettings().min_duration  # the paper's 10 s, at its default
    assert duration_verdict(10.0, default) is True
    assert duration_verdict(9.99, default) is False
    assert duration_verdict(600, default) is True
    assert duration_verdict(None, default) is None
    assert duration_verdict(float("nan"), default) is None
    assert duration_verdict(4.0, min_duration=3.0) is True


def test_keep_decision_needs_one_top1_frame():
    assert keep_decision([5, 7, 281, 281], 281).kept
    decision = keep_decision([5, 7, 281, 3, 281], 281)
    assert (decision.matched_frames, decision.first_match) == (2, 2)
    rejected = keep_decision([5, 7, 3], 281)
    assert not rejected.kept and rejected.first_match == -1 and rejected.matched_frames == 0
    assert not keep_decision([], 281).kept


def test_keep_decision_at_its_boundary_one_frame_first_or_last():
    only_first = keep_decision([281] + [5] * 99, 281)
    assert only_first.kept and (only_first.matched_frames, only_first.first_match) == (1, 0)
    only_last = keep_decision([5] * 99 + [281], 281)
    assert only_last.kept and (only_last.matched_frames, only_last.first_match) == (1, 99)
    assert not keep_decision([5] * 100, 281).kept


def test_dedup_and_cap_is_deterministic_and_ordered_by_rank():
    items = [Ranked("b", 0, 1, "b0"), Ranked("a", 0, 0, "a0"), Ranked("a", 1, 0, "a1"), Ranked("c", 1, 1, "c1")]
    kept, duplicates, over_cap = dedup_and_cap(items, cap=2)
    assert kept == ["a0", "b0"] and duplicates == ["a1"] and over_cap == ["c1"]
    assert dedup_and_cap(list(reversed(items)), cap=2) == (kept, duplicates, over_cap)
    assert dedup_and_cap([], cap=5) == ([], [], [])


def test_stage_rows_carry_status_and_reason():
    candidate = {"id": "v1", "title": "Funny cat videos", "wnid": "n02123045", "class_index": 281,
                 "name": "tabby", "term": "tabby", "term_order": 0, "rank": 0}
    row = match_title(candidate, ["tabby", "tabby cat"])
    assert row["status"] == "title_mismatch" and "tabby" in row["reason"]
    ok = match_title({**candidate, "title": "My tabby cat"}, ["tabby cat", "tabby"])
    assert "status" not in ok and ok["term"] == "tabby cat"
    rows = dedup_class([ok, {**ok, "term_order": 1}, {**ok, "id": "v2", "rank": 3}], cap=1)
    assert [r.get("status") for r in rows] == [None, "duplicate", "over_cap"]


def test_one_class_per_video_goes_to_the_class_top1_on_the_most_frames():
    from videonet.curation.judge.verdicts import winning_class

    assert winning_class([285, 281, 281, 7], [285, 281]) == 281
    assert winning_class([285, 281, 285, 281], [285, 281]) == 281  # a tie: the lower class index
    assert winning_class([285, 281, 285, 281, 285], [281, 285]) == 285
    assert winning_class([3], [3]) == 3


def test_a_video_passing_two_classes_is_kept_once():
    from videonet.curation.judge.verdicts import Scanned, verdict_rows
    from videonet.curation.write.records import EXTRA_LABELS

    tabby = {"wnid": "n02123045", "class_index": 281, "name": "tabby", "id": "v", "title": "tabby or Egyptian cat"}
    egyptian = {**tabby, "wnid": "n02124075", "class_index": 285, "name": "Egyptian cat"}
    scan = Scanned(12.0, 10.0, (281, 285), (285, 281, 285, 9), (0.5, 0.6, 0.7, 0.9), 4, False)
    kept, other = verdict_rows([tabby, egyptian], scan, None, 10.0)
    assert (kept["class_index"], kept["labels"], kept["matched_frames"]) == (285, [285], 2)
    assert other["status"] == "kept_for_other_class" and other["wnid"] == "n02123045"
    assert "n02124075" in other["reason"]
    [multi] = verdict_rows([tabby, egyptian], scan, None, 10.0, multi_label=True)
    assert multi["labels"] == [285, 281] and [e["class_index"] for e in multi[EXTRA_LABELS]] == [281]
