"""The ImageNet-1k vocabulary on the real WordNet 3.0 data, and the --classes grammar."""

import subprocess
import sys
from pathlib import Path

import pytest

from videonet.errors import UserError
from videonet.curation.vocabulary.classes import build_table, default_table_path, find_classes, imagenet1k, parse_classes, read_table


@pytest.fixture(scope="module")
def built():
    return build_table()


def test_wordnet_expansion_of_known_classes(built):
    by_wnid = {c.wnid: c for c in built}
    assert {"tabby", "tabby cat"} <= set(by_wnid["n02123045"].terms)
    assert "Chihuahua" in by_wnid["n02085620"].terms
    assert "Tinca tinca" in by_wnid["n01440764"].terms  # a WordNet synonym, not the torchvision name
    assert len(built) == 1000 and len({c.wnid for c in built}) == 1000
    assert all(c.terms for c in built)
    assert [c.index for c in built] == list(range(1000))
    assert [c.wnid for c in built] == sorted(c.wnid for c in built)


def test_terms_are_deduplicated_case_insensitively(built):
    for c in built:
        lowered = [t.lower() for t in c.terms]
        assert len(lowered) == len(set(lowered)), c
        assert all("_" not in t for t in c.terms)


def test_shared_terms_mark_ambiguity(built):
    by_wnid = {c.wnid: c for c in built}
    crane_bird, crane_machine = by_wnid["n02012849"], by_wnid["n03126707"]
    assert "crane" in crane_bird.shared_terms and "n03126707" in crane_bird.shared_with
    assert "n02012849" in crane_machine.shared_with
    assert not by_wnid["n02085620"].shared_terms


def test_hyponyms_flag_adds_terms():
    small = build_table(hyponyms=True)
    plain = {c.wnid: c for c in imagenet1k()}
    grown = [c for c in small if len(c.terms) > len(plain[c.wnid].terms)]
    assert len(grown) > 50
    assert sum(len(c.terms) for c in small) > sum(len(c.terms) for c in plain.values())


def test_committed_table_is_what_build_writes(built):
    committed = read_table(default_table_path())
    assert committed == built


def test_committed_noun_exceptions_are_what_build_writes(tmp_path):
    """--title-match inflected reads WordNet's irregular plurals from this shipped copy, not WordNet."""
    from videonet.curation.candidates import irregular_plurals
    from videonet.curation.vocabulary.wordnet import write_noun_exceptions

    assert write_noun_exceptions(tmp_path / "noun_exc.tsv") > 2000
    assert (tmp_path / "noun_exc.tsv").read_bytes() == (default_table_path().parent / "noun_exc.tsv").read_bytes()
    assert {"geese", "mice", "oxen", "wolves"} <= {f for forms in irregular_plurals().values() for f in forms}


def test_classes_grammar(tmp_path):
    assert len(parse_classes("imagenet1k")) == 1000
    chosen = parse_classes("n02123045, 151,0")
    assert [c.index for c in chosen] == [0, 151, 281]
    table = tmp_path / "mine.tsv"
    table.write_text("index\twnid\tname\tterms\n281\tn02123045\ttabby\ttabby|stripy cat\n")
    mine = parse_classes(str(table))
    assert mine[0].terms == ("tabby", "stripy cat")
    assert find_classes("tabby cat", imagenet1k())[0].wnid == "n02123045"
    assert find_classes("281", imagenet1k())[0].name == "tabby"


@pytest.mark.parametrize("spec, needle", [
    ("n99999999", "n99999999"),
    ("1000", "1000"),
    ("cat", "'cat'"),
])
def test_bad_classes_are_user_errors(spec, needle):
    with pytest.raises(UserError, match=needle):
        parse_classes(spec)


def test_broken_tsv_names_the_bad_value(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("index\twnid\tname\tterms\nx\tn02123045\ttabby\ttabby\n")
    with pytest.raises(UserError, match="bad index 'x'"):
        parse_classes(str(bad))
    bad.write_text("index\twnid\tname\tterms\n281\tn01440764\ttabby\ttabby\n")
    with pytest.raises(UserError, match="does not match index 281"):
        parse_classes(str(bad))
    bad.write_text("index\twnid\n281\tn02123045\n")
    with pytest.raises(UserError, match="missing column"):
        parse_classes(str(bad))


@pytest.mark.parametrize("args, needle", [
    (["synonyms", "show", "n99999999"], "no class matches"),
    (["synonyms", "show", "tabby", "--classes", "1234"], "bad index 1234"),
    (["synonyms", "show", "tabby", "--classes", "/nonexistent/x.tsv"], "not found"),
    (["synonyms", "build", "--wordnet-dir", "/nonexistent", "--out", "/tmp/never.tsv"], "--wordnet-dir"),
])
def test_cli_errors_are_one_line_exit_2(args, needle):
    proc = subprocess.run([sys.executable, "-m", "videonet", *args], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_show_prints_the_row():
    proc = subprocess.run([sys.executable, "-m", "videonet", "synonyms", "show", "n02123045"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split("\t")[:3] == ["281", "n02123045", "tabby"]
    assert "tabby cat" in proc.stdout
