"""A client for Prometheus' HTTP API (``/api/v1/query``), bounded and with clear errors."""

from __future__ import annotations

from typing import Any

import aiohttp

from t3probe.attribute.http import get_json
from t3probe.attribute.model import SourceError

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# Prometheus aborts a query past this itself, before our own deadline cuts the socket.
QUERY_TIMEOUT = "15s"
_SNIPPET = 200


class PrometheusAPI:
    def __init__(
        self, client: aiohttp.ClientSession, base: str, max_bytes: int = MAX_RESPONSE_BYTES
    ) -> None:
        self._client = client
        self.base = base
        self._max_bytes = max_bytes

    async def query(self, expr: str, at: float) -> tuple[Any, tuple[str, ...]]:
        """Evaluate ``expr`` at unix time ``at``: the answer's ``data`` and its warnings."""
        params = {"query": expr, "time": f"{at:.3f}", "timeout": QUERY_TIMEOUT}
        return await self._ask("query", params, expr)

    async def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> tuple[Any, tuple[str, ...]]:
        """Evaluate ``expr`` every ``step`` seconds from ``start`` to ``end``."""
        params = {
            "query": expr,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step:.3f}",
            "timeout": QUERY_TIMEOUT,
        }
        return await self._ask("query_range", params, expr)

    async def _ask(
        self, endpoint: str, params: dict[str, str], expr: str
    ) -> tuple[Any, tuple[str, ...]]:
        answer = await get_json(
            self._client,
            f"{self.base}/api/v1/{endpoint}",
            params,
            max_bytes=self._max_bytes,
            what="Prometheus",
        )
        body = answer.body
        if isinstance(body, dict) and body.get("status") == "error":
            raise SourceError(
                f"Prometheus rejected a query ({body.get('errorType', 'error')}):"
                f" {body.get('error', '?')}\n  query: {expr}"
            )
        if answer.status == 404:
            raise SourceError(
                f"no Prometheus HTTP API at {self.base} (HTTP 404 for /api/v1/query):"
                " is the URL right?"
            )
        if answer.status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            snippet = answer.text[:_SNIPPET].strip()
            raise SourceError(
                f"{self.base} does not answer like Prometheus' API"
                f" (HTTP {answer.status}): {snippet!r}"
            )
        warnings = body.get("warnings") or []
        return body.get("data"), tuple(str(w) for w in warnings if w)
