"""A non-local Apache Beam filesystem for tests: ``vntest://a/b`` is the file ``$VIDEONET_TEST_FS_ROOT/a/b``.

Code that claims to read ``gs://`` or ``s3://`` paths through Beam's ``FileSystems`` can be tested
without a bucket: importing this module registers the ``vntest`` scheme (Beam finds every
``FileSystem`` subclass), and the paths it hands to the code under test are URLs, so a code path
that quietly treats them as local files fails. The root comes from an environment variable so
that worker processes which import this module see the same files::

    monkeypatch.setenv(remotefs.ROOT_ENV, str(tmp_path))
    remotefs.url("weights/r50.pt")  # "vntest://weights/r50.pt"
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import BinaryIO, Iterator

from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

SCHEME = "vntest"
ROOT_ENV = "VIDEONET_TEST_FS_ROOT"
PREFIX = f"{SCHEME}://"


def url(relative: str) -> str:
    """The ``vntest://`` URL of a path relative to the root."""
    return PREFIX + relative.lstrip("/")


def local(path: str) -> str:
    """The local file behind a ``vntest://`` URL."""
    if not path.startswith(PREFIX):
        raise ValueError(f"not a {SCHEME}:// path: {path!r}")
    root = os.environ.get(ROOT_ENV)
    if not root:
        raise ValueError(f"set {ROOT_ENV} to the directory that {PREFIX} paths live in")
    return str(Path(root) / path[len(PREFIX):])


class RemoteTestFileSystem(LocalFileSystem):
    """Maps ``vntest://`` URLs onto a local directory; every path in and out of it is a URL."""

    def __init__(self, pipeline_options=None) -> None:
        super().__init__(pipeline_options)
        self._fs = LocalFileSystem(pipeline_options)

    @classmethod
    def scheme(cls) -> str:
        return SCHEME

    def _url(self, local_path: str) -> str:
        return url(os.path.relpath(local_path, os.environ[ROOT_ENV]))

    def join(self, basepath: str, *paths: str) -> str:
        return posixpath.join(basepath, *paths)

    def split(self, path: str) -> tuple[str, str]:
        head, _, tail = path.rpartition("/")
        return head, tail

    def _url_dirname(self, url_or_path: str) -> str:
        return posixpath.dirname(url_or_path)

    def mkdirs(self, path: str) -> None:
        self._fs.mkdirs(local(path))

    def _list(self, dir_or_prefix: str) -> Iterator[FileMetadata]:
        for meta in self._fs._list(local(dir_or_prefix)):
            yield FileMetadata(self._url(meta.path), meta.size_in_bytes, meta.last_updated_in_seconds)

    def create(self, path: str, mime_type: str = "application/octet-stream",
               compression_type: str = CompressionTypes.AUTO) -> BinaryIO:
        return self._fs.create(local(path), mime_type, compression_type)

    def open(self, path: str, mime_type: str = "application/octet-stream",
             compression_type: str = CompressionTypes.AUTO) -> BinaryIO:
        return self._fs.open(local(path), mime_type, compression_type)

    def copy(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        self._fs.copy([local(p) for p in source_file_names], [local(p) for p in destination_file_names])

    def rename(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        self._fs.rename([local(p) for p in source_file_names], [local(p) for p in destination_file_names])

    def exists(self, path: str) -> bool:
        return self._fs.exists(local(path))

    def size(self, path: str) -> int:
        return self._fs.size(local(path))

    def last_updated(self, path: str) -> float:
        return self._fs.last_updated(local(path))

    def checksum(self, path: str) -> str:
        return self._fs.checksum(local(path))

    def metadata(self, path: str) -> FileMetadata:
        meta = self._fs.metadata(local(path))
        return FileMetadata(path, meta.size_in_bytes, meta.last_updated_in_seconds)

    def delete(self, paths: list[str]) -> None:
        self._fs.delete([local(p) for p in paths])
