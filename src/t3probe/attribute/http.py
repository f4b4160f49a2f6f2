"""Bounded JSON over HTTP: every fetch has a deadline and a size cap."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from t3probe.attribute.model import BadInput, SourceError
from t3probe.netguard import NonLoopbackConnection

CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 20.0
CHUNK_BYTES = 64 * 1024


def base_url(text: str, what: str, strip_suffixes: tuple[str, ...] = ()) -> str:
    """``text`` as an http(s) base URL without trailing slash; :class:`BadInput` if not."""
    try:
        parts = urlsplit(text.strip())
        _ = parts.port  # raises on a malformed port
    except ValueError as err:
        raise BadInput(f"{what} URL {text!r} is malformed: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"{what} URL {text!r} must be http:// or https:// with a host")
    if parts.query or parts.fragment:
        raise BadInput(f"{what} URL {text!r} must not carry a query or fragment")
    path = parts.path.rstrip("/")
    for suffix in strip_suffixes:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass(frozen=True)
class JsonAnswer:
    status: int
    body: Any  # None when the body is not JSON
    text: str


def session(total_seconds: float = REQUEST_TIMEOUT_SECONDS) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(
        total=total_seconds, connect=CONNECT_TIMEOUT_SECONDS, sock_connect=CONNECT_TIMEOUT_SECONDS
    )
    # The user's proxy settings would send a loopback or in-cluster query astray.
    return aiohttp.ClientSession(timeout=timeout, trust_env=False)


async def get_json(
    client: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str],
    *,
    max_bytes: int,
    what: str,
) -> JsonAnswer:
    """GET ``url``; any status is returned, a body over ``max_bytes`` is a :class:`SourceError`."""
    try:
        async with client.get(url, params=dict(params), allow_redirects=False) as response:
            declared = response.content_length
            if declared is not None and declared > max_bytes:
                raise SourceError(_too_large(what, max_bytes))
            body = bytearray()
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                body += chunk
                if len(body) > max_bytes:
                    raise SourceError(_too_large(what, max_bytes))
            status = response.status
    except TimeoutError:
        raise SourceError(f"{what} at {url} did not answer in time") from None
    except aiohttp.ClientError as err:
        raise SourceError(f"cannot reach {what} at {url}: {_describe(err)}") from None
    except OSError as err:
        raise SourceError(f"cannot reach {what} at {url}: {err}") from None
    except NonLoopbackConnection as err:
        raise SourceError(f"cannot reach {what} at {url}: {err}") from None
    text = body.decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = None
    return JsonAnswer(status, parsed, text)


def _too_large(what: str, max_bytes: int) -> str:
    return (
        f"{what}'s answer exceeds {max_bytes // (1024 * 1024)} MiB: narrow --window"
        " (or the probe's legs are more than this command is meant for)"
    )


def _describe(err: BaseException) -> str:
    if isinstance(err, aiohttp.ClientConnectorError):
        return str(err.os_error.strerror or err.os_error)
    return str(err) or type(err).__name__
