"""The ``catalog:PATH`` source: a table of titles (parquet, csv, tsv or jsonl) searched like a keyword engine.

Rows name local files, remote files on any Beam filesystem (gs://, s3://) or http(s) URLs; a row
that cannot be used (no title, a NUL byte or an oversized field, a value of the wrong type, an
impossible duration, a path outside ``--catalog-root``...) is audited once as ``invalid_catalog_row``
with the reason, and costs nothing else. A catalog that cannot be read, lacks the ``title`` column or
both of ``path`` and ``url``, or has no usable row at all is a one-line error before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from videonet.curation.candidates import implausible_duration, normalize_words, term_forms
from videonet.curation.client import ClientSettings, Session
from videonet.curation.search import Query, SearchSettings, stable_id
from videonet.errors import UserError

_STOP_WORDS = frozenset("a an and of the in on for with to de la le s".split())
TEXT_FIELDS = ("title", "id", "url", "path", "uploader")  # what a hit carries into Parquet and the resume keys
MAX_FIELD_CHARS = 4096  # PATH_MAX; YouTube allows 100 characters of title: a longer field is not a video's


def _read_jsonl(data: bytes) -> tuple[list[dict], list[dict], set[str]]:
    rows, invalid, columns = [], [], set()
    for line_no, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except UnicodeDecodeError:
            invalid.append({"row": line_no, "reason": "row is not valid UTF-8"})
            continue
        except ValueError as exc:
            invalid.append({"row": line_no, "reason": f"malformed JSON: {exc}"})
            continue
        rows.append({**row, "_row": line_no})
        columns |= row.keys()
    return rows, invalid, columns


def _read_catalog(path: str) -> bytes:
    """The catalog file's bytes, from any Beam filesystem (local, gs://, s3://). A local one must be a
    regular file, checked before it is opened: a FIFO would block the run (and its lock) forever."""
    from apache_beam.io.filesystems import FileSystems

    if "://" in path:
        try:
            with FileSystems.open(path, compression_type="uncompressed") as fh:
                return fh.read()
        except Exception:
            raise UserError(f"catalog not found or unreadable: {path}") from None
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UserError(f"catalog {path} is not a regular file (a directory, FIFO or device)")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise UserError(f"catalog not found or unreadable: {path}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between the check and the open
            raise UserError(f"catalog {path} is not a regular file (a directory, FIFO or device)")
        return fh.read()


def _read_table(path: str, data: bytes) -> tuple[list[dict], list[dict], set[str]]:
    """The rows (numbered) of the catalog file ``path`` holding ``data``, the rows refused while
    parsing, and the columns it has."""
    import io

    import pandas as pd

    suffix = path.lower()
    try:
        if suffix.endswith(".parquet"):
            frame = pd.read_parquet(io.BytesIO(data))
        elif suffix.endswith((".csv", ".tsv")):
            return _read_csv(data, "\t" if suffix.endswith(".tsv") else ",")
        elif suffix.endswith((".jsonl", ".json")):
            return _read_jsonl(data)
        else:
            raise UserError(f"catalog {path}: unknown format (use .parquet, .csv, .tsv or .jsonl)")
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"catalog {path} cannot be read: {str(exc).splitlines()[0]}") from None
    frame = frame.astype(object).where(frame.notna(), None)
    return [{**row, "_row": i} for i, row in enumerate(frame.to_dict("records"))], [], set(frame.columns)


def _read_csv(data: bytes, sep: str) -> tuple[list[dict], list[dict], set[str]]:
    """csv/tsv rows as strings, numbered by file line; bytes that are not UTF-8 stay surrogate escapes
    so that only their row is refused (pandas' parser rejects the whole file for them). The csv
    module's field limit (128 KiB, process-wide) is raised to the file's size: an oversized field is
    its row's fault (:func:`validate_row`), not the catalog's."""
    import csv
    import io

    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=sep)
    rows = [{**{k: v for k, v in row.items() if k is not None}, "_row": reader.line_num} for row in reader]
    return rows, [], set(reader.fieldnames or ())


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _remote_under(path: str, root: Path | str) -> bool:
    """A remote path is inside a remote root of the same scheme once '..' is resolved; never in a local one."""
    root = str(root)
    if "://" not in root:
        return False
    (scheme, rest), (root_scheme, root_rest) = path.split("://", 1), root.split("://", 1)
    inside = posixpath.normpath("/" + rest) + "/"
    return scheme.lower() == root_scheme.lower() and inside.startswith(posixpath.normpath("/" + root_rest).rstrip("/") + "/")


def field_problem(name: str, value) -> str | None:
    """Why a text field of a row cannot be used as it is (an ``id`` may also be an integer), or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        if name == "id" and isinstance(value, int) and not isinstance(value, bool):
            return None
        return f"{name} is not text ({type(value).__name__})"
    if "\0" in value:
        return f"{name} contains a NUL byte"
    if len(value) > MAX_FIELD_CHARS:
        return f"{name} is {len(value)} characters long (at most {MAX_FIELD_CHARS})"
    if _has_surrogates(value):
        return f"{name} is not valid UTF-8"
    return None


def _duration(value) -> tuple[float | None, str | None]:
    """A row's duration in seconds (None: not given), or the reason it is not one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, bool):
        return None, f"duration is not a number: {value!r}"
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return None, f"duration is not a number: {str(value)[:80]!r}"
    problem = implausible_duration(seconds)
    return (None, problem) if problem else (seconds, None)


def validate_row(row: dict, base: str, root: Path | str | None) -> tuple[dict | None, str | None]:
    """Turn one catalog row into a hit, or give the reason it is unusable (its first problem)."""
    title = row.get("title")
    if title is None or (isinstance(title, str) and not title.strip()):
        return None, "missing title"
    for name in TEXT_FIELDS:  # they go into Parquet, the resume keys and open() as they are
        if problem := field_problem(name, row.get(name)):
            return None, problem
    url, path = row.get("url") or None, row.get("path") or None
    if not url and not path:
        return None, "neither url nor path given"
    if url and not re.match(r"^https?://", str(url), re.IGNORECASE):
        return None, f"url scheme not allowed (http/https only): {str(url)[:80]}"
    if path and "://" in str(path):  # a remote file (gs://, s3://): read through Beam's filesystems
        path = str(path)
        if root is not None and not _remote_under(path, root):
            return None, f"path escapes --catalog-root: {path}"
    elif path:
        local = Path(str(path))
        resolved = (local if local.is_absolute() else Path(base) / local).resolve()
        if root is not None and not resolved.is_relative_to(root):
            return None, f"path escapes --catalog-root: {path}"
        path = str(resolved)
    duration, problem = _duration(row.get("duration"))
    if problem:
        return None, problem
    ident = row.get("id")
    ident = str(ident) if ident is not None and str(ident).strip() else stable_id(str(url or path))
    return {"id": ident, "title": title, "url": url, "path": path, "duration": duration,
            "uploader": row.get("uploader")}, None


@dataclass
class CatalogSource:
    """A local table of titles (parquet, csv, tsv or jsonl) searched like a keyword engine.

    ``pages`` returns rows sharing a content word with the term (an inverted index over title
    words); rows that cannot be used are reported once by :meth:`invalid_rows` with the reason.
    """

    path: str
    root: str | None = None
    name: str = "catalog"
    _hits: list[dict] = field(default_factory=list, init=False, repr=False)
    _invalid: list[dict] = field(default_factory=list, init=False, repr=False)
    _index: dict[str, list[int]] | None = field(default=None, init=False, repr=False)
    _digest: str | None = field(default=None, init=False, repr=False)

    def _load(self) -> None:
        if self._index is not None:
            return
        data = _read_catalog(self.path)
        self._digest = hashlib.sha1(data).hexdigest()
        rows, self._invalid, columns = _read_table(self.path, data)
        if "title" not in columns or not {"path", "url"} & columns:
            raise UserError(f"catalog {self.path} needs a title column and a path or url column "
                            f"(it has: {', '.join(sorted(map(str, columns))) or 'none'})")
        root = (self.root if "://" in self.root else Path(self.root).resolve()) if self.root else None
        base = posixpath.dirname(self.path) if "://" in self.path else str(Path(self.path).resolve().parent)
        index: dict[str, list[int]] = defaultdict(list)
        first_row: dict[str, int] = {}
        for row in rows:
            hit, reason = validate_row(row, base, root)
            if hit is not None and hit["id"] in first_row:  # which of two videos an id means is unknowable
                hit, reason = None, f"duplicate id {hit['id']!r} (already used by catalog row {first_row[hit['id']]})"
            if hit is not None:
                first_row[hit["id"]] = row["_row"]
            if hit is None:
                self._invalid.append({"row": row["_row"], "reason": reason, "title": row.get("title"),
                                      "url": row.get("url"), "path": row.get("path")})
                continue
            for word in set(normalize_words(hit["title"]).split()):
                index[word].append(len(self._hits))
            self._hits.append(hit)
        if not self._hits:
            first = min(self._invalid, key=lambda r: r["row"], default=None)
            why = f" (row {first['row']}: {first['reason']})" if first else ""
            raise UserError(f"catalog {self.path}: none of its {len(self._invalid)} rows can be used{why}")
        self._index = dict(index)

    def queries(self, term: str) -> tuple[Query, ...]:
        """One query per term: the catalog's keyword index has no filters to split it by."""
        return (Query(term, "keywords", term),)

    def pages(self, query: Query, size: int, site: Session) -> Iterator[list[dict]]:
        """Rows sharing a content word with the term or its plurals (an engine stems; the title rule
        decides afterwards), in catalog order, ``size`` per page: offset/limit over the index, one
        request of ``site`` per page."""
        self._load()
        words = {w for form in term_forms(query.term) for w in form.split()}
        words = {w for w in words if w not in _STOP_WORDS} or words
        found = sorted({i for w in words for i in self._index.get(w, ())})
        for start in range(0, max(len(found), 1), size):
            yield site.call(lambda: [dict(self._hits[i]) for i in found[start:start + size]])

    def prepare(self) -> None:
        """Read the catalog once on the driver: an unreadable one is a one-line error here, not a crash
        inside a worker (a throwaway copy, so the pipeline does not carry the loaded rows to workers)."""
        loaded = CatalogSource(self.path, self.root, self.name)
        loaded.invalid_rows()
        self._digest = loaded._digest

    def fingerprint(self) -> str:
        """The digest of the catalog's bytes as this run reads them: a finished run's marks hold it, so
        a catalog that changed (rows appended, a path edited) is searched again by the rerun, and the
        resume join judges only the candidates the audit does not already have."""
        if self._digest is None:
            self.prepare()
        return self._digest

    def invalid_rows(self) -> list[dict]:
        self._load()
        return [dict(row, reason=f"catalog row {row['row']}: {row['reason']}") for row in self._invalid]


def source(arg: str | None, settings: SearchSettings, client: ClientSettings) -> CatalogSource:
    """``--source catalog:PATH``, its paths confined to ``--catalog-root`` when given."""
    return CatalogSource(arg, root=settings.catalog_root)
