"""The pure curation rules, edge cases included, without Beam."""

import pytest

from videonet.curation.candidates import ClassCandidates, match_title, term_forms
from videonet.curation.candidates import CandidateSettings, duration_verdict, normalize_words, title_match
from videonet.errors import UserError
from videonet.curation.judge.verdicts import keep_decision


def _term(title: str, terms: list[str], inflect: bool = True) -> str | None:
    found = title_match(title, terms, inflect)
    return found and found.term


def test_title_match_is_whole_word_and_case_insensitive():
    assert _term("My CAT sleeps", ["cat"]) == "cat"
    assert _term("Category theory lecture", ["cat"]) is None
    assert _term("concatenate strings", ["cat"]) is None
    assert _term("Tabby-cat!!! compilation", ["tabby cat"]) == "tabby cat"
    assert _term("tabby   cat", ["tabby cat"]) == "tabby cat"


def test_title_match_tolerates_punctuation_and_accents():
    assert _term("Jack-o'-lantern carving 2024", ["jack-o'-lantern"]) == "jack-o'-lantern"
    assert _term("Crème brûlée recipe", ["creme brulee"]) == "creme brulee"
    assert _term("great_white_shark attack", ["great white shark"]) == "great white shark"
    assert normalize_words("  Tabby,Cat  ") == "tabby cat"


def test_title_match_returns_first_matching_term_in_order():
    assert _term("a tabby cat", ["tabby cat", "tabby"]) == "tabby cat"
    assert _term("a tabby", ["tabby cat", "tabby"]) == "tabby"
    assert _term("anything", []) is None
    assert _term("", ["cat"]) is None


@pytest.mark.parametrize("title, term, form", [
    ("Ostriches running at the zoo", "ostrich", "ostriches"),  # -es after ch
    ("Baby goldfishes in my pond", "goldfish", "goldfishes"),  # -es after sh
    ("My hens laying eggs", "hen", "hens"),
    ("Box of BOXES", "box", "box"),  # the term itself comes first
    ("two sleepy puppies", "puppy", "puppies"),  # consonant + y: -ies
    ("Monkeys at play", "monkey", "monkeys"),  # vowel + y: -s
    ("Mosquitoes and mosquitos", "mosquito", "mosquitoes"),
    ("Canada GEESE landing", "Canada goose", "canada geese"),  # WordNet's irregular forms, last word
    ("Wireless mice review", "mouse", "mice"),
    ("Golden Retrievers playing", "golden retriever", "golden retrievers"),  # a multi-word term inflects its last
    ("CRÈME Brûlées au caramel", "crème brûlée", "creme brulees"),  # accent-insensitive
    ("aides-de-camp at the parade", "aide-de-camp", "aides de camp"),  # an irregular multi-word form
])
def test_title_match_accepts_regular_and_irregular_plurals(title, term, form):
    assert title_match(title, [term]) == (term, form)
    strict = title_match(title, [term], inflect=False)  # --title-match strict: only the term's own words
    assert strict == ((term, form) if form == normalize_words(term) else None)


@pytest.mark.parametrize("title, term", [
    ("Ostrichs", "ostrich"), ("puppys", "puppy"), ("monkies", "monkey"), ("gooses", "mouse"),
    ("pines in the wind", "pin"),  # only the plural rules, no loose suffixes
    ("retrievers golden", "golden retriever"), ("golden retrieverses", "golden retriever"),
    ("catsup recipe", "cat"),  # still whole words
])
def test_title_match_refuses_what_is_not_an_inflection(title, term):
    assert title_match(title, [term]) is None


def test_strict_title_match_is_the_term_only():
    assert term_forms("ostrich", inflect=False) == ("ostrich",)
    assert term_forms("ostrich") == ("ostrich", "ostriches")
    assert title_match("Ostriches running", ["ostrich"], inflect=False) is None
    assert title_match("An ostrich running", ["ostrich"], inflect=False) == ("ostrich", "ostrich")
    assert CandidateSettings().title_match == "inflected"
    with pytest.raises(UserError, match="--title-match 'loose'"):
        CandidateSettings(title_match="loose")


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


def test_class_candidates_dedup_and_cap_in_retrieval_order():
    cls = {"wnid": "n02123045", "class_index": 281, "name": "tabby"}
    hits = [{**cls, "id": ident, "title": title} for ident, title in [
        ("a", "tabby"), ("x", "a dog"), ("b", "tabbies"), ("a", "tabby again"), ("c", "tabby three"), ("c", "tabby")]]
    candidates = ClassCandidates(("tabby",), cap=2)
    statuses = []
    for hit in hits:
        statuses.append(candidates.admit(hit).get("status"))
        if hit["id"] == "b":
            assert candidates.full and candidates.admitted == 2  # full exactly at the cap
    assert statuses == [None, "title_mismatch", None, "duplicate", "over_cap", "duplicate"]
    assert not ClassCandidates(("tabby",), cap=1).full


def test_stage_rows_carry_status_and_reason():
    candidate = {"id": "v1", "title": "Funny cat videos", "wnid": "n02123045", "class_index": 281,
                 "name": "tabby", "term": "tabby"}
    row = match_title(candidate, ["tabby", "tabby cat"])
    assert row["status"] == "title_mismatch" and "tabby" in row["reason"]
    ok = match_title({**candidate, "title": "My tabby cats"}, ["tabby cat", "tabby"])
    assert "status" not in ok and (ok["term"], ok["matched_form"]) == ("tabby cat", "tabby cats")
    candidates = ClassCandidates(("tabby cat", "tabby"), cap=1)
    rows = [candidates.admit(c) for c in (ok, ok, {**ok, "id": "v2"})]
    assert [r.get("status") for r in rows] == [None, "duplicate", "over_cap"]
    assert rows[2]["matched_form"] == "tabby cats" and "--per-class" in rows[2]["reason"]


def test_one_class_per_video_goes_to_the_class_top1_on_the_most_frames():
    from videonet.curation.judge.verdicts import winning_class

    assert winning_class([285, 281, 281, 7], [285, 281]) == 281
    assert winning_class([285, 281, 285, 281], [285, 281]) == 281  # a tie: the lower class index
    assert winning_class([285, 281, 285, 281, 285], [281, 285]) == 285
    assert winning_class([3], [3]) == 3


def test_a_video_passing_two_classes_is_kept_once():
    from videonet.curation.judge.verdicts import Scanned, verdict_rows
    from videonet.curation.rundir import EXTRA_LABELS

    tabby = {"wnid": "n02123045", "class_index": 281, "name": "tabby", "id": "v", "title": "tabby or Egyptian cat"}
    egyptian = {**tabby, "wnid": "n02124075", "class_index": 285, "name": "Egyptian cat"}
    scan = Scanned(12.0, 10.0, (281, 285), (285, 281, 285, 9), (0.5, 0.6, 0.7, 0.9), 4, False)
    kept, other = verdict_rows([tabby, egyptian], scan, None, 10.0)
    assert (kept["class_index"], kept["labels"], kept["matched_frames"]) == (285, [285], 2)
    assert other["status"] == "kept_for_other_class" and other["wnid"] == "n02123045"
    assert "n02124075" in other["reason"]
    [multi] = verdict_rows([tabby, egyptian], scan, None, 10.0, multi_label=True)
    assert multi["labels"] == [285, 281] and [e["class_index"] for e in multi[EXTRA_LABELS]] == [281]
