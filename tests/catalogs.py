"""Where a test catalog lives: a local directory or a prefix on the test S3 server.

Tests that damage a catalog from outside (planting foreign files, truncating or deleting
them) do it through a :class:`Catalog`, so that one test body runs against both kinds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import lazybars as lb


class Catalog(Protocol):
    kind: str
    root: str  # as BarStore takes it, and as messages name it

    def open(self) -> lb.BarStore:
        """A new store handle on the catalog."""

    def put(self, name: str, data: bytes) -> None:
        """Plant ``data`` at ``name`` (relative to the root), bypassing lazybars."""

    def get(self, name: str) -> bytes: ...

    def delete(self, name: str) -> None: ...

    def tree(self) -> dict[str, str]:
        """Every file in and around the catalog (hidden ones too; the directory it is in,
        or its whole bucket, so that writes outside it show) -> sha256 of its bytes."""


@dataclass
class DirectoryCatalog:
    path: Path
    kind: str = "disk"

    @property
    def root(self) -> str:
        return str(self.path)

    def open(self) -> lb.BarStore:
        return lb.BarStore(self.path)

    def put(self, name: str, data: bytes) -> None:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def get(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def delete(self, name: str) -> None:
        (self.path / name).unlink()

    def tree(self) -> dict[str, str]:
        around = self.path.parent
        return {
            p.relative_to(around).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(around.rglob("*"))
            if p.is_file()
        }


class S3Catalog:
    """A catalog under ``s3://<bucket>/catalog`` on the test server."""

    kind = "s3"

    def __init__(self, server: Any, bucket: str) -> None:
        from obstore.store import S3Store

        self.server = server
        self.options = server.options()
        self.bucket = bucket
        self.root = f"s3://{bucket}/catalog"
        self._bucket = S3Store(bucket, config=self.options)

    def open(self) -> lb.BarStore:
        return lb.BarStore(self.root, storage_options=self.options)

    def put(self, name: str, data: bytes) -> None:
        import obstore

        obstore.put(self._bucket, f"catalog/{name}", data)

    def get(self, name: str) -> bytes:
        import obstore

        return bytes(obstore.get(self._bucket, f"catalog/{name}").bytes())

    def delete(self, name: str) -> None:
        import obstore

        obstore.delete(self._bucket, f"catalog/{name}")

    def tree(self) -> dict[str, str]:
        import obstore

        names = sorted(m["path"] for batch in obstore.list(self._bucket) for m in batch)
        return {
            n: hashlib.sha256(bytes(obstore.get(self._bucket, n).bytes())).hexdigest()
            for n in names
        }


def make(kind: str, request: Any, path: Path) -> Catalog:
    """An empty catalog of ``kind`` ("disk": at ``path``; "s3": in a new bucket)."""
    if kind == "disk":
        return DirectoryCatalog(path)
    server = request.getfixturevalue("s3_server")
    return S3Catalog(server, server.bucket())
