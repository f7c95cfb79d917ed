"""A WSGI app for testing the web worker on its own: it sleeps, or echoes a digest of the body."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """`/sleep?seconds=N` sleeps; `/big?bytes=N` answers N bytes; else the body's digest."""
    if environ["PATH_INFO"] == "/big":
        size = int(parse_qs(environ["QUERY_STRING"])["bytes"][0])
        start_response("200 OK", [("Content-Length", str(size))])
        return [b"x" * size]
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(float(parse_qs(environ["QUERY_STRING"])["seconds"][0]))
    body = environ["wsgi.input"].read()
    answer = json.dumps({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    start_response("200 OK", headers)
    return [answer]
