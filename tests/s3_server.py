"""A real S3-compatible server for the tests, on 127.0.0.1: moto's S3 in a thread.

moto's WSGI app is wrapped in a small middleware that logs every request (method, path,
query, Range header, status, body bytes received and sent) so that tests can count the
bytes a read transfers, and that can refuse chosen requests or hold them (a failed or a
slow upload). Buckets are created with a plain unsigned PUT, as moto allows.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from typing import Any

ACCESS_KEY, SECRET_KEY = "testing", "testing"
_REFUSAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>refused by the test</Message></Error>"
)
# No proxy for loopback, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    range: str | None
    status: int
    received: int
    sent: int


Rule = Callable[[str, str], bool]  # (method, query) -> whether the rule applies


class S3Server:
    """moto's S3 on an ephemeral port of 127.0.0.1, until :meth:`stop`."""

    def __init__(self) -> None:
        import logging

        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request
        app = DomainDispatcherApplication(create_backend_app)
        self._app = app
        self._lock = threading.Lock()
        self._logs: list[list[Request]] = []
        self._refuse: list[Rule] = []
        self._hold: list[tuple[Rule, float, list[str]]] = []
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=MotoRequestHandler
        )
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._names = count()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()

    def options(self, **overrides: Any) -> dict[str, Any]:
        """The storage_options that reach this server (polars' spelling)."""
        return {
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "aws_endpoint_url": self.endpoint,
            "aws_allow_http": "true",
            "aws_region": "us-east-1",
            **overrides,
        }

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"lazybars-{next(self._names)}"
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with _OPENER.open(request) as response:
            assert response.status == 200
        return name

    def raw(self, method: str, path: str, data: bytes | None = None) -> bytes:
        """An unsigned request straight to moto (to plant or inspect objects)."""
        request = urllib.request.Request(f"{self.endpoint}/{path}", data=data, method=method)
        with _OPENER.open(request) as response:
            return response.read()

    @contextmanager
    def log(self) -> Iterator[list[Request]]:
        """The requests served while the block runs."""
        found: list[Request] = []
        with self._lock:
            self._logs.append(found)
        try:
            yield found
        finally:
            with self._lock:
                self._logs.remove(found)

    @contextmanager
    def refusing(self, rule: Rule) -> Iterator[None]:
        """Answer requests matching ``rule`` with 403 AccessDenied while the block runs."""
        with self._lock:
            self._refuse.append(rule)
        try:
            yield
        finally:
            with self._lock:
                self._refuse.remove(rule)

    @contextmanager
    def holding(self, rule: Rule, seconds: float) -> Iterator[list[str]]:
        """Delay requests matching ``rule`` by ``seconds`` while the block runs; yields the
        queries of the held requests, each added as it arrives (before the delay)."""
        entry: tuple[Rule, float, list[str]] = (rule, seconds, [])
        with self._lock:
            self._hold.append(entry)
        try:
            yield entry[2]
        finally:
            with self._lock:
                self._hold.remove(entry)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method, query = environ["REQUEST_METHOD"], environ.get("QUERY_STRING", "")
        with self._lock:
            refused = any(rule(method, query) for rule in self._refuse)
            held = [(s, arrived) for rule, s, arrived in self._hold if rule(method, query)]
            for _, arrived in held:
                arrived.append(query)
        delay = sum(s for s, _ in held)
        if delay:
            time.sleep(delay)
        status: list[int] = []

        def start(code: str, headers: list[Any], exc_info: Any = None) -> Any:
            status.append(int(code.split(maxsplit=1)[0]))
            return start_response(code, headers, exc_info)

        if refused:
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start("403 Forbidden", [("Content-Type", "application/xml")])
            chunks = [_REFUSAL]
        else:
            body = self._app(environ, start)
            try:
                chunks = list(body)
            finally:
                if hasattr(body, "close"):
                    body.close()
        # Logged before a byte is sent: once a client has its answer, the log holds it.
        self._record(environ, status[0] if status else 0, sum(map(len, chunks)))
        return chunks

    def _record(self, environ: dict[str, Any], status: int, sent: int) -> None:
        request = Request(
            environ["REQUEST_METHOD"],
            environ.get("PATH_INFO", ""),
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_RANGE"),
            status,
            int(environ.get("CONTENT_LENGTH") or 0),
            sent,
        )
        with self._lock:
            for found in self._logs:
                found.append(request)
