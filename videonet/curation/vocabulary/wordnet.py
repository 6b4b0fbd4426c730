"""Locate WordNet 3.0 for nltk and expand ImageNet synsets (wnids) into query terms.

nltk only reads WordNet from an nltk data path laid out as ``corpora/wordnet/`` that also holds
``lexnames`` and ``index.sense``. Debian's ``wordnet-base`` ships the database under
``/usr/share/wordnet`` without ``lexnames``, so we assemble an nltk-style directory
(a copy, in a cache dir) and add the 45-line lexnames table from lexnames(5WN).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Iterable

from videonet.errors import UserError

DEBIAN_WORDNET = Path("/usr/share/wordnet")

# lexnames(5WN): file number, lexicographer file name, syntactic category (1 noun, 2 verb, 3 adj, 4 adv).
_LEX_FILES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
    "adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
LEXNAMES = "".join(
    f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(_LEX_FILES)
)

_REQUIRED = ("data.noun", "index.noun", "index.sense")
_INSTALL_HINT = (
    "WordNet 3.0 not found: install it with `apt-get install wordnet-base wordnet-sense-index`, "
    "or `python -m nltk.downloader wordnet`, or pass --wordnet-dir DIR"
)


def _is_wordnet_db(directory: Path) -> bool:
    return all((directory / name).is_file() for name in _REQUIRED)


def _nltk_layout(directory: Path) -> Path | None:
    """Return the nltk data root if ``directory`` is one (or is its corpora/wordnet dir)."""
    for root in (directory, directory.parent.parent):
        wn = root / "corpora" / "wordnet"
        if _is_wordnet_db(wn) and (wn / "lexnames").is_file():
            return root
    return None


def assemble_nltk_root(db_dir: Path, cache_dir: Path | None = None) -> Path:
    """Build an nltk data root (``corpora/wordnet``) holding a copy of a bare WordNet database dir."""
    cache_dir = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "videonet"
    root = cache_dir / "nltk_data"
    target = root / "corpora" / "wordnet"
    target.mkdir(parents=True, exist_ok=True)
    for source in db_dir.iterdir():
        copy = target / source.name
        if copy.is_symlink():
            copy.unlink()
        if source.is_file() and not copy.exists():
            # Copies, not symlinks: nltk's path sandbox refuses links that resolve outside its root.
            shutil.copyfile(source, copy)
    lexnames = target / "lexnames"
    if not lexnames.exists():
        lexnames.write_text(LEXNAMES)
    return root


def find_nltk_root(wordnet_dir: str | Path | None = None) -> Path:
    """Find WordNet in the documented order: --wordnet-dir, $NLTK_DATA / nltk paths, Debian's copy."""
    import nltk

    candidates: list[Path] = []
    if wordnet_dir is not None:
        candidates.append(Path(wordnet_dir))
    else:
        candidates += [Path(p) for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
        candidates += [Path(p) for p in nltk.data.path]
        candidates.append(DEBIAN_WORDNET)
    for directory in candidates:
        if not directory.is_dir():
            continue
        root = _nltk_layout(directory)
        if root is not None:
            return root
        if _is_wordnet_db(directory):
            return assemble_nltk_root(directory)
    if wordnet_dir is not None:
        raise UserError(f"--wordnet-dir {wordnet_dir}: no WordNet database there. {_INSTALL_HINT}")
    raise UserError(_INSTALL_HINT)


def load_wordnet(wordnet_dir: str | Path | None = None):
    """Return nltk's WordNet corpus reader over WordNet 3.0 found by :func:`find_nltk_root`."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    import nltk

    root = find_nltk_root(wordnet_dir)
    if str(root) not in nltk.data.path:  # nltk only opens files under its data path (a sandbox)
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():  # "multilingual functions are not available": we need none
        warnings.simplefilter("ignore", UserWarning)
        reader = WordNetCorpusReader(str(root / "corpora" / "wordnet"), None)
    if reader.get_version() != "3.0":
        raise UserError(f"WordNet at {root} is version {reader.get_version()}; ImageNet wnids need 3.0")
    return reader


def wnid_synset(wn, wnid: str):
    """ImageNet wnid ``nXXXXXXXX`` is the WordNet 3.0 noun synset at that byte offset."""
    if len(wnid) != 9 or wnid[0] != "n" or not wnid[1:].isdigit():
        raise UserError(f"not a wnid: {wnid!r} (expected n followed by 8 digits)")
    return wn.synset_from_pos_and_offset("n", int(wnid[1:]))


def dedupe_terms(terms: Iterable[str]) -> list[str]:
    """Keep first spelling of each term, compared case-insensitively, in order."""
    seen: set[str] = set()
    out: list[str] = []
    for term in terms:
        term = " ".join(term.replace("_", " ").split())
        if term and term.lower() not in seen:
            seen.add(term.lower())
            out.append(term)
    return out


def synset_terms(synset, hyponyms: bool = False) -> list[str]:
    """The synset's lemma names (the paper's 'name + synonyms'); optionally all hyponyms' lemmas."""
    lemmas = list(synset.lemma_names())
    if hyponyms:
        for hypo in synset.closure(lambda s: s.hyponyms()):
            lemmas += hypo.lemma_names()
    return dedupe_terms(lemmas)


def write_noun_exceptions(out: str | Path, wordnet_dir: str | Path | None = None) -> int:
    """Write WordNet 3.0's irregular noun forms (``noun.exc``: 'geese goose') as a ``form<TAB>base`` tsv.

    Curation matches plural titles with it (:func:`videonet.curation.candidates.irregular_plurals`);
    shipping this copy as package data keeps WordNet off the workers. Returns the number of pairs.
    """
    exc = find_nltk_root(wordnet_dir) / "corpora" / "wordnet" / "noun.exc"
    pairs = [(form, base) for line in exc.read_text(encoding="utf-8").splitlines() if line.strip()
             for form, *bases in [line.split()] for base in bases]
    lines = ["form\tbase", *(f"{form.replace('_', ' ')}\t{base.replace('_', ' ')}" for form, base in pairs)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(pairs)
