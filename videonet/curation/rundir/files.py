"""Reading and writing the run directory's files on any Beam filesystem: atomic writes, the committed
tables back as DataFrames, the shards' samples. The names and schemas are :mod:`videonet.curation.rundir`."""

from __future__ import annotations

import io
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from videonet.errors import DamagedRunFile
from videonet.curation.rundir import AUDIT, AUDIT_SCHEMA, METADATA, METADATA_SCHEMA, SHARDS, join


def list_files(directory: str, pattern: str) -> list[str]:
    match = FileSystems.match([join(directory, pattern)])[0]
    return sorted(m.path for m in match.metadata_list)


def publish(tmp: str, path: str) -> None:
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def write_atomic(path: str, data: bytes) -> None:
    """Write to ``path.tmp`` then rename, so readers see the whole file or nothing."""
    with FileSystems.create(path + ".tmp") as fh:
        fh.write(data)
    publish(path + ".tmp", path)


def parquet_bytes(rows: list[dict], schema: pa.Schema) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer)
    return buffer.getvalue()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A part written by an older videonet lacks the newer columns: they read as nulls."""
    for column in schema:
        if column.name not in table.column_names:
            table = table.append_column(column, pa.nulls(len(table), column.type))
    return table.select(schema.names).cast(schema)


def read_table(out: str, directory: str, schema: pa.Schema, columns: list[str] | None = None):
    """All committed Parquet parts of ``out/directory`` as one pandas DataFrame; only ``columns`` (of
    ``schema``) when given: at millions of rows the columns a reader does not need cost gigabytes."""
    schema = pa.schema([schema.field(name) for name in columns]) if columns else schema
    tables = []
    for path in list_files(join(out, directory), "*.parquet"):
        try:
            with FileSystems.open(path) as fh:
                part = pq.ParquetFile(io.BytesIO(fh.read()))
            present = set(part.schema_arrow.names)
            tables.append(_conform(part.read(columns=[n for n in schema.names if n in present]), schema))
        except (pa.ArrowException, OSError) as exc:  # truncated, emptied, overwritten: name the file
            raise DamagedRunFile(path, f"unreadable Parquet file ({str(exc).strip().splitlines()[0]})") from None
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return table.to_pandas(self_destruct=True)


def read_audit(out: str, columns: list[str] | None = None):
    return read_table(out, AUDIT, AUDIT_SCHEMA, columns)


def final_rows(audit):
    """The rows of each candidate's (class, video) latest run: its final status.

    A rerun writes rows only for candidates it decided again (those left retriable), so a candidate's
    latest run holds its last word; within one run a candidate may also have a ``duplicate`` row (its
    video met again by another term), which stays. Run ids start with a UTC time stamp; a row of an
    older videonet has none and comes first. The history stays on disk; readers that count use this.
    Only the classes that more than one run audited are grouped per candidate: a class audited by one
    run is final as it is, and grouping millions of candidates costs gigabytes.
    """
    run = audit["run_id"].fillna("")
    wnid = audit["wnid"].fillna("")
    mixed = (run.groupby(wnid).transform("nunique") > 1).to_numpy()
    keep = ~mixed
    if mixed.any():
        again = run[mixed]
        keep[mixed] = (again == again.groupby([wnid[mixed], audit["id"][mixed]]).transform("max")).to_numpy()
    return audit[keep]


def read_metadata(out: str):
    return read_table(out, METADATA, METADATA_SCHEMA)


def shard_paths(out: str) -> list[str]:
    return list_files(join(out, SHARDS), "*.tar")


def read_shard(path: str) -> dict[str, dict]:
    """Map key -> {extension: bytes} for one shard (used by checks and tests)."""
    samples: dict[str, dict] = {}
    try:
        with FileSystems.open(path) as fh, tarfile.open(fileobj=io.BytesIO(fh.read())) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    except tarfile.TarError as exc:
        raise DamagedRunFile(path, f"unreadable shard ({exc})") from None
    return samples
