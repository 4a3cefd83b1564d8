"""Catalogs on S3-compatible object storage: the ``s3://`` backend of BarStore (an edge).

``BarStore("s3://bucket/prefix", storage_options={...})`` keeps the directory catalog's
layout under the prefix. Reads are polars' native cloud scans, which fetch byte ranges: the
footer, then only the row groups (and columns) that a query's window needs. Listing uses
the object store's LIST; a file's version is its ETag (one HEAD); its footer (schema and
manifest) is one ranged GET of its last bytes, pinned to that ETag, and checked once per
version. A write streams the finished parquet file to a local temporary file and uploads it
whole: one PUT, or for large files a multipart upload that becomes visible only when it
completes, so readers see the old object or the new one, never a torn one.

Writers cannot hold a lock here, so they upload on conditions (``If-Match`` an ETag they
read; ``If-None-Match: *`` for a new object), each as one PUT (conditions do not apply to
multipart uploads; S3 takes up to 5 GiB in one). An append after the stored bars uploads
its part (``lazybars._parts``), then the parts manifest on the condition that it is still
the version read. An append that merges, and a compaction, first seal the manifest by a
conditional upload (no part may then be added to the base they replace), upload the new
base on the condition that the base is still the version they read, then reset the
manifest. When another writer got in first, S3 refuses the upload (412) and the write
reads and merges again, a few times, before it gives up with a ``StorageError``: the
other writer's bars are never lost. A plain replace is one unconditional upload (the last
one wins); the parts it leaves name another generation, and the next writer retires them.

The client is ``obstore`` (the ``s3`` extra), the Python binding of the Rust
``object_store`` crate that polars itself uses for cloud scans, so one set of
``storage_options`` means the same to both. It is imported when an ``s3://`` store is
opened, never by ``import lazybars``.

Credentials come from ``storage_options`` or the usual ``AWS_*`` environment variables.
Without any, opening fails at once: the AWS default chain would end by asking the EC2
instance metadata service (169.254.169.254), which off EC2 hangs or is refused. That
service is used only when asked for (``aws_metadata_endpoint``).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl

from lazybars._backend import (
    Change,
    FileBackend,
    Frame,
    Key,
    Plan,
    Replaced,
    Snapshot,
    State,
    file_name,
    manifest_metadata,
    part_folder,
    symbol_file,
    timestep_folder,
)
from lazybars._merge import Part, merge
from lazybars._parts import (
    MANIFEST,
    PartEntry,
    Parts,
    crowded,
    extended,
    new_generation,
    new_part_name,
    retiring,
)
from lazybars.errors import InvalidRequest, MissingExtra, SchemaError, StorageError
from lazybars.ingest import write_bars
from lazybars.timestep import Timestep

__all__ = ["ObjectBackend", "resolve_options"]

_INSTALL = "pip install 'lazybars[s3]'"
# The spellings of true that the client takes for a boolean option.
_TRUE = ("true", "1", "yes", "y", "on")
# Appends that lose the race to another writer merge again this many times in all.
_UPDATE_ATTEMPTS = 5
# Spellings users bring from boto3, s3fs or the AWS CLI, as polars and object_store name them.
_ALIASES = {
    "aws_endpoint": "aws_endpoint_url",
    "aws_endpoint_url_s3": "aws_endpoint_url",
    "aws_key": "aws_access_key_id",
    "aws_secret": "aws_secret_access_key",
    "aws_token": "aws_session_token",
    "aws_default_region": "aws_region",
}
_CREDENTIALS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
# Read from the environment when storage_options do not name them (the AWS CLI's names;
# the first of several spellings found wins).
_ENVIRONMENT = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ALLOW_HTTP",
    "AWS_SKIP_SIGNATURE",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_METADATA_ENDPOINT",
)
# Credential sources other than keys that the user has set up on purpose.
_OTHER_SOURCES = (
    "aws_web_identity_token_file",
    "aws_container_credentials_relative_uri",
    "aws_container_credentials_full_uri",
    "aws_metadata_endpoint",
)
# Options of polars' own, not of object_store (polars 2.1's list); max_retries also sets
# lazybars' own requests' retries.
_POLARS_ONLY = frozenset(
    (
        "file_cache_ttl",
        "max_retries",
        "retry_timeout_ms",
        "retry_init_backoff_ms",
        "retry_max_backoff_ms",
        "retry_base_multiplier",
        "rate_read_init",
        "rate_read_floor",
        "rate_read_ceiling",
        "rate_write_init",
        "rate_write_floor",
        "rate_write_ceiling",
    )
)


def resolve_options(
    storage_options: Mapping[str, Any] | None, environ: Mapping[str, str]
) -> dict[str, Any]:
    """``storage_options`` in polars' spelling (``aws_*`` keys, string values), completed
    from the ``AWS_*`` variables of ``environ`` for what they do not name.

    Keys and secret are taken together: from ``storage_options`` when it names any of
    them, else from ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
    ``AWS_SESSION_TOKEN``.

    >>> env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "eu"}
    >>> resolve_options({"endpoint_url": "http://127.0.0.1:9000", "allow_http": True}, env)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'aws_endpoint_url': 'http://127.0.0.1:9000', 'aws_allow_http': 'true',
     'aws_region': 'eu', 'aws_access_key_id': 'k', 'aws_secret_access_key': 's'}
    """
    options: dict[str, Any] = {}
    for key, value in (storage_options or {}).items():
        if not isinstance(key, str):
            msg = f"storage_options keys must be strings, got {key!r}"
            raise InvalidRequest(msg)
        name = key.lower()
        if name in _POLARS_ONLY:
            options[name] = value
            continue
        name = name if name.startswith("aws_") else f"aws_{name}"
        name = _ALIASES.get(name, name)
        if value is None or value == "":
            continue
        options[name] = str(value).lower() if isinstance(value, bool) else str(value)
    for variable in _ENVIRONMENT:
        name = _ALIASES.get(variable.lower(), variable.lower())
        if environ.get(variable) and name not in options:
            options[name] = environ[variable]
    if not any(options.get(k) for k in _CREDENTIALS):
        for name in _CREDENTIALS:
            if environ.get(name.upper()):
                options[name] = environ[name.upper()]
    return options


def _require_credentials(options: Mapping[str, Any], uri: str, environ: Mapping[str, str]) -> None:
    keys = options.get("aws_access_key_id") and options.get("aws_secret_access_key")
    anonymous = str(options.get("aws_skip_signature", "")).lower() == "true"
    if keys or anonymous or any(options.get(k) for k in _OTHER_SOURCES):
        return
    half = (
        "only one of aws_access_key_id and aws_secret_access_key is set; "
        if any(options.get(k) for k in _CREDENTIALS)
        else ""
    )
    profile = (
        f" AWS_PROFILE={environ['AWS_PROFILE']!r} is set, but profiles are not read: export "
        'its keys, e.g. eval "$(aws configure export-credentials --format env)".'
        if environ.get("AWS_PROFILE")
        else ""
    )
    # The environment first: it is all the CLI reads. Plain strings below, so that the
    # braces of the Python spellings print as they are written.
    msg = (
        f"no credentials for {uri}: {half}set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(in Python, or storage_options={'aws_access_key_id': ..., 'aws_secret_access_key': "
        "...}); a public bucket: AWS_SKIP_SIGNATURE=true ({'aws_skip_signature': 'true'}); "
        "an EC2 instance role: AWS_METADATA_ENDPOINT=http://169.254.169.254 "
        "({'aws_metadata_endpoint': 'http://169.254.169.254'}), as lazybars never asks the "
        "instance metadata service unless told to." + profile
    )
    raise StorageError(msg)


def _require_https_or_allowed(options: Mapping[str, Any], uri: str) -> None:
    # The client refuses plain http unless allowed, but only when a request is made, and
    # then as a bare "builder error".
    endpoint = str(options.get("aws_endpoint_url", ""))
    allowed = str(options.get("aws_allow_http", "")).lower() in _TRUE
    if endpoint.lower().startswith("http://") and not allowed:
        msg = (
            f"the endpoint {endpoint} of {uri} is plain http, which is refused unless allowed: "
            "set AWS_ALLOW_HTTP=true (in Python, or storage_options={'aws_allow_http': "
            "'true'}), or use https"
        )
        raise StorageError(msg)


def _obstore() -> ModuleType:
    try:
        import obstore  # noqa: PLC0415 - the s3 extra, imported when an s3:// store opens
    except ImportError:
        msg = f"s3:// catalogs need the s3 extra: {_INSTALL}"
        raise MissingExtra(msg) from None
    return obstore


def _split(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``."""
    rest = uri.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not bucket or "//" in prefix:
        msg = f"catalog URI {uri!r} is malformed; use s3://bucket or s3://bucket/prefix"
        raise InvalidRequest(msg)
    return bucket, prefix


class ObjectBackend(FileBackend):
    """A catalog under an ``s3://bucket/prefix`` on S3 or an S3-compatible store."""

    remote = True

    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None) -> None:
        bucket, prefix = _split(uri)
        self.where = f"s3://{bucket}/{prefix}".rstrip("/")
        self._obs = _obstore()
        options = resolve_options(storage_options, os.environ)
        _require_credentials(options, self.where, os.environ)
        _require_https_or_allowed(options, self.where)
        config = {k: v for k, v in options.items() if k not in _POLARS_ONLY}
        retries = options.get("max_retries")
        retry = None if retries is None else {"max_retries": int(retries)}
        try:
            self._store = self._obs.store.S3Store(
                bucket, prefix=prefix or None, config=config, retry_config=retry
            )
        except (ValueError, self._obs.exceptions.BaseError) as exc:
            msg = f"invalid storage_options for {self.where} ({exc}); check the option names"
            raise InvalidRequest(msg) from None
        self._options = options
        self._bucket, self._prefix = bucket, prefix
        endpoint = options.get("aws_endpoint_url")
        self.key = ("s3", endpoint, bucket, prefix)

    def __reduce__(self) -> tuple[Any, ...]:
        # A store sent to another process (a worker of a parameter sweep, say) opens the
        # same catalog there, with the options resolved here.
        return (ObjectBackend, (self.where, self._options))

    # -- listing ----------------------------------------------------------------------------
    def listing(self) -> set[Key]:
        keys = set()
        try:
            for batch in self._obs.list(self._store, None, chunk_size=1000):
                for meta in batch:
                    found = _key(meta["path"])
                    if found is not None:
                        keys.add(found)
        except (OSError, self._obs.exceptions.BaseError) as exc:
            raise self._error(exc, "list") from None
        return keys

    def timesteps(self, symbol: str) -> list[Timestep]:
        # One LIST of the timestep folders, then a HEAD per folder: not a whole listing.
        try:
            folders = self._obs.list_with_delimiter(self._store, None)["common_prefixes"]
        except (OSError, self._obs.exceptions.BaseError) as exc:
            raise self._error(exc, "list") from None
        found = []
        for folder in folders:
            timestep = timestep_folder(folder.rsplit("/", 1)[-1])
            if timestep is not None and self._head(file_name(symbol, timestep)) is not None:
                found.append(timestep)
        return sorted(found)

    # -- files ------------------------------------------------------------------------------
    def location(self, name: str) -> str:
        return f"{self.where}/{name}"

    def snapshot(self, name: str) -> Snapshot:
        meta = self._head(name)
        if meta is None:
            msg = (
                f"catalog file {self.location(name)} is gone (deleted after it was listed?); "
                "write the symbol again"
            )
            raise SchemaError(msg)
        return _ObjectVersion(self, name, meta)

    def get(self, name: str, options: dict[str, Any]) -> bytes:
        """The bytes of a ranged, conditional GET (Replaced when the condition fails)."""
        try:
            return bytes(self._obs.get(self._store, name, options=options).bytes())
        except (FileNotFoundError, self._obs.exceptions.PreconditionError):
            raise Replaced(name) from None  # deleted or replaced since it was looked at
        except (OSError, self._obs.exceptions.BaseError) as exc:
            raise self._error(exc, f"read {name} from") from None

    def scan(self, names: Sequence[str], schema: pl.Schema) -> pl.LazyFrame:
        # Explicit options and no credential provider: polars neither reads other
        # configuration nor falls back on instance metadata. Keys are used verbatim ('#',
        # '?' or '%' in a symbol need no escaping).
        return pl.scan_parquet(
            [self.location(name) for name in names],
            glob=False,
            schema=schema,
            hive_partitioning=False,
            storage_options=self._options,
            credential_provider=None,
        )

    def get_manifest(self, name: str) -> tuple[bytes, Hashable] | None:
        try:
            found = self._obs.get(self._store, name)
            raw = bytes(found.bytes())
        except FileNotFoundError:
            return None
        except (OSError, self._obs.exceptions.BaseError) as exc:
            raise self._error(exc, f"read {name} from") from None
        meta = found.meta
        return raw, (meta.get("e_tag"), meta.get("version"))

    def put(self, symbol: str, timestep: Timestep, bars: Part) -> None:
        # One unconditional upload, the last one wins (a large file goes up in parts). It
        # keeps no stored bar, so it leaves the manifest alone: the parts name another
        # generation, and the next writer retires them.
        metadata = manifest_metadata(bars.rows, bars.first, bars.last, new_generation())
        self._upload(file_name(symbol, timestep), bars.bars, metadata, None)

    def update(self, symbol: str, timestep: Timestep, plan: Plan) -> None:
        def attempt(state: State | None) -> bool:
            # The versions are read before plan() reads the bars: a writer that replaces
            # the base or the manifest after this point makes the conditional upload fail.
            stored = None if state is None else self.stored(symbol, timestep, state)
            bars, extends = plan(stored)
            if state is None or stored is None or not extends:
                return self._rewrite(symbol, timestep, state, bars)
            if not state.generation or (state.manifest is not None and state.manifest.sealed):
                # A base from before parts, or a rewrite under way (or dead): append by
                # rewriting, sealed in turn.
                return self._rewrite(symbol, timestep, state, merge([stored, bars]))
            manifest = self._add_part(symbol, timestep, state, bars)
            if manifest is not None and crowded(state.rows, manifest.parts):
                # The append is stored; compacting is a courtesy that may lose a race.
                with suppress(StorageError):
                    self.compact(symbol, timestep)
            return manifest is not None

        self._retrying(symbol, timestep, attempt)

    def compact(self, symbol: str, timestep: Timestep) -> int:
        folded: list[int] = []

        def attempt(state: State | None) -> bool:
            parts = () if state is None else state.parts
            folded.append(len(parts))
            if state is None or not parts:
                return True
            whole = self.stored(symbol, timestep, state)
            return self._rewrite(symbol, timestep, state, whole, linger=True)

        self._retrying(symbol, timestep, attempt)
        return folded[-1]

    def update_meta(self, name: str, change: Change) -> None:
        # A conditional upload on the version read, read and changed again when another
        # writer got in first.
        errors = self._obs.exceptions
        for i in range(_UPDATE_ATTEMPTS):
            found = self.get_manifest(name)
            new = change(None if found is None else found[0])
            if new is None:
                return
            mode: str | dict[str, str] = "create"
            if found is not None:
                e_tag, object_version = found[1]  # type: ignore[misc]
                mode = {"e_tag": e_tag} | ({"version": object_version} if object_version else {})
            try:
                self._obs.put(self._store, name, new, mode=mode)
            except (errors.PreconditionError, errors.AlreadyExistsError):
                time.sleep(random.uniform(0, 0.05 * 2**i))
                continue
            except (OSError, errors.BaseError) as exc:
                raise self._error(exc, f"upload {name} to") from None
            return
        msg = (
            f"cannot write {name} in {self.where}: other writers changed it "
            f"{_UPDATE_ATTEMPTS} times while this write read it, so nothing was written; "
            "write again when they are done"
        )
        raise StorageError(msg)

    # -- helpers ----------------------------------------------------------------------------
    def _retrying(
        self, symbol: str, timestep: Timestep, attempt: Callable[[State | None], bool]
    ) -> None:
        """Run ``attempt`` on the key's state until it is not outrun by another writer."""
        name = file_name(symbol, timestep)
        for i in range(_UPDATE_ATTEMPTS):
            state = None if self._head(name) is None else self.state(symbol, timestep)
            if attempt(state):
                return
            # Rivals that collided wait different times before they try again.
            time.sleep(random.uniform(0, 0.05 * 2**i))
        msg = (
            f"cannot write {symbol} at {timestep} in {self.where}: other writers changed "
            f"{name} or its parts {_UPDATE_ATTEMPTS} times while this write read them, so "
            "nothing was written; write again when they are done"
        )
        raise StorageError(msg)

    def _add_part(self, symbol: str, timestep: Timestep, state: State, bars: Part) -> Parts | None:
        """Upload ``bars`` as a new part, then list it in the manifest on the condition
        that the manifest is still the one read (None: it is not; the part is removed)."""
        folder = part_folder(symbol, timestep)
        name = new_part_name()
        metadata = manifest_metadata(bars.rows, bars.first, bars.last, state.generation)
        size = self._upload(f"{folder}/{name}", bars.bars, metadata, None)
        assert size is not None  # an unconditional upload either lands or raises
        entry = PartEntry(name=name, rows=bars.rows, first=bars.first, last=bars.last, bytes=size)
        manifest = extended(state.manifest, state.generation, entry)
        if self._put_manifest(symbol, timestep, manifest, state.manifest_version):
            return manifest
        self._delete([f"{folder}/{name}"])
        return None

    def _rewrite(
        self,
        symbol: str,
        timestep: Timestep,
        state: State | None,
        bars: Part,
        *,
        linger: bool = False,
    ) -> bool:
        """Upload ``bars`` as a new generation of the base that keeps the stored bars, on
        the condition that the base is still the one ``state`` read (False when it is
        not, or when another writer got to the manifest first).

        The manifest is sealed first, by a conditional upload, so that no part is added to
        the base being replaced; after the upload the manifest is reset to the new
        generation and the parts it named are deleted (``linger``: the parts folded are
        kept, retired, for lazy scans planned before). A writer killed on the way leaves a
        sealed or outdated manifest, which the next writer of the key resets.
        """
        base = file_name(symbol, timestep)
        generation = new_generation()
        metadata = manifest_metadata(bars.rows, bars.first, bars.last, generation)
        if state is None:  # a new key: parts left from a removed one name another generation
            return self._upload(base, bars.bars, metadata, "create") is not None
        old = state.manifest
        sealed = (old or Parts.of(generation)).model_copy(update={"sealed": True})
        sealed_version = self._put_manifest(symbol, timestep, sealed, state.manifest_version)
        if sealed_version is None:
            return False
        condition = _condition(state.version, self.location(base))
        if self._upload(base, bars.bars, metadata, condition) is None:
            return False
        kept = tuple(p.name for p in state.parts) if linger else ()
        self._put_manifest(symbol, timestep, Parts.of(generation, retired=kept), sealed_version)
        folder = part_folder(symbol, timestep)
        self._delete([f"{folder}/{n}" for n in retiring(old) if n not in kept])
        return True

    def _put_manifest(
        self, symbol: str, timestep: Timestep, manifest: Parts, version: Hashable
    ) -> Hashable:
        """Upload ``manifest`` if the stored one is still ``version`` (None: if there is
        none); the new version, or None when the condition failed."""
        name = f"{part_folder(symbol, timestep)}/{MANIFEST}"
        mode: str | dict[str, str] = "create"
        if version is not None:
            e_tag, object_version = version  # type: ignore[misc]
            mode = {"e_tag": e_tag} | ({"version": object_version} if object_version else {})
        errors = self._obs.exceptions
        try:
            done = self._obs.put(self._store, name, manifest.dump(), mode=mode)
        except (errors.PreconditionError, errors.AlreadyExistsError):
            return None
        except (OSError, errors.BaseError) as exc:
            raise self._error(exc, f"upload {name} to") from None
        return (done.get("e_tag"), done.get("version"))

    def _delete(self, names: list[str]) -> None:
        # Best effort: a part left behind is only a file no manifest applies.
        if names:
            with suppress(OSError, self._obs.exceptions.BaseError):
                self._obs.delete(self._store, names)

    def _upload(
        self, name: str, bars: Frame, metadata: dict[str, str], mode: str | dict[str, str] | None
    ) -> int | None:
        """Upload ``bars`` as ``name``, on the condition ``mode`` (None: unconditionally);
        its size in bytes, or None when the condition failed (the object is not the
        version ``mode`` names)."""
        # The whole file is written first (streamed, bounded memory), then uploaded whole:
        # nothing reaches the store unless the file was complete.
        with tempfile.TemporaryDirectory(prefix="lazybars-upload-") as folder:
            path = Path(folder) / "bars.parquet"
            with path.open("wb") as fh:
                write_bars(bars, fh, metadata)
            errors = self._obs.exceptions
            try:
                if mode is None:
                    # Large files go up in parts; S3 shows the object only once all are in.
                    self._obs.put(self._store, name, path)
                else:
                    self._obs.put(self._store, name, path, mode=mode)
            except (errors.PreconditionError, errors.AlreadyExistsError):
                return None  # another writer replaced (or created) the object meanwhile
            except (OSError, errors.BaseError) as exc:
                raise self._error(exc, f"upload {name} to") from None
            return path.stat().st_size

    def _head(self, name: str) -> dict[str, Any] | None:
        try:
            return self._obs.head(self._store, name)
        except FileNotFoundError:
            return None
        except (OSError, self._obs.exceptions.BaseError) as exc:
            raise self._error(exc, f"read {name} from") from None

    def _error(self, exc: Exception, doing: str) -> StorageError:
        text = str(exc).split("\n", 1)[0].strip()
        endpoint = self._options.get("aws_endpoint_url", "AWS S3")
        errors = self._obs.exceptions
        if "NoSuchBucket" in str(exc):
            msg = (
                f"bucket {self._bucket!r} does not exist at {endpoint}: create it, or check the "
                "bucket name and aws_endpoint_url"
            )
        elif isinstance(exc, errors.PermissionDeniedError | errors.UnauthenticatedError) or any(
            code in str(exc) for code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoes")
        ):
            msg = (
                f"access denied: cannot {doing} {self.where} ({text}); check the credentials "
                "(aws_access_key_id, aws_secret_access_key) and the bucket's permissions"
            )
        else:
            msg = (
                f"cannot {doing} {self.where} at {endpoint} ({text}); check aws_endpoint_url "
                "(AWS_ENDPOINT_URL) and the network"
            )
        return StorageError(msg)


def _condition(version: Hashable, where: str) -> dict[str, str]:
    """The upload condition that an object is still the version a snapshot read."""
    e_tag, object_version = version  # type: ignore[misc]
    if not isinstance(e_tag, str) or not e_tag:
        msg = (
            f"{where} has no ETag, so writing it cannot be made safe against other writers; "
            "use an S3 store that returns ETags"
        )
        raise StorageError(msg)
    return {"e_tag": e_tag} | ({"version": object_version} if object_version else {})


def _key(path: str) -> Key | None:
    """The (symbol, timestep) an object's path under the prefix stands for, if any."""
    folder, _, name = path.partition("/")
    if not name or "/" in name:
        return None
    timestep, symbol = timestep_folder(folder), symbol_file(name)
    return None if timestep is None or symbol is None else (symbol, timestep)


class _ObjectVersion(Snapshot):
    """One version of an object: its ETag from a HEAD, its bytes by GETs pinned to it."""

    def __init__(self, backend: ObjectBackend, name: str, meta: dict[str, Any]) -> None:
        self._backend, self._name = backend, name
        self._etag = meta.get("e_tag")
        # A replaced object gets a new ETag (and version id, where the bucket keeps them).
        self.version = (
            (self._etag, meta.get("version"))
            if self._etag
            else (meta["size"], meta["last_modified"])
        )
        self.size = meta["size"]

    def tail(self, start: int) -> bytes:
        options: dict[str, Any] = {"range": (start, self.size)}
        if self._etag:
            options["if_match"] = self._etag
        return self._backend.get(self._name, options)

    def close(self) -> None:
        pass  # nothing held open between requests
