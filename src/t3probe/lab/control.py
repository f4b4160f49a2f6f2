"""Hand-driven fault injection for the live lab: a tiny HTTP API on loopback.

curl -X POST   http://127.0.0.1:9109/lab/fault/edge/blackhole
curl -X DELETE http://127.0.0.1:9109/lab/fault/edge
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from t3probe.echo import valid_close_code
from t3probe.lab.backend import MAX_SLOW_MS
from t3probe.lab.faultproxy import MAX_LATENCY_MS, MAX_SHARE_EVERY, ProxyFault
from t3probe.lab.topology import LB_ADDRESS, LabParts

PROXY_FAULTS = tuple(fault.value for fault in ProxyFault)
TARGETS: dict[str, tuple[str, ...]] = {
    "edge": PROXY_FAULTS,
    "lb": PROXY_FAULTS,
    "dispatch": ("close",),
    "backend": ("stall", "slow"),
    "doh": ("down", "lie"),
}
# The query parameters each fault takes, with what they mean, for the help and for refusals.
PARAMETERS: dict[str, dict[str, str]] = {
    "latency": {"ms": "added round trip in milliseconds, 0..60000 (default 100)"},
    "slow": {"ms": "how late the backend answers, in milliseconds, 1..60000 (default 500)"},
    "half_open": {"direction": "the direction still forwarded: upstream or downstream"},
    "reset_share": {"every": "reset every n-th connection, existing and new, 2..64 (default 2)"},
    "blackhole_share": {"every": "hold every n-th connection, existing and new, 2..64 (default 2)"},
    "close": {"code": "the WebSocket close code sent (default 1012)"},
    "lie": {"address": f"the IP address every DoH answer carries (default {LB_ADDRESS})"},
}
ENDPOINTS: dict[str, str] = {
    "GET /lab": "this help: targets, their faults, the faults active now",
    "POST /lab/fault/{target}/{fault}": "inject a fault; parameters as ?name=value",
    "DELETE /lab/fault/{target}": "lift the target's fault; target 'all' lifts every one",
}


def _number(name: str, text: str, low: float, high: float) -> float:
    """One query parameter as a finite number within bounds, or a ValueError naming it."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name}={text!r} must be a number within {low:g}..{high:g}")
    return value


def _close_code(text: str) -> int:
    code = int(text) if text.isdigit() and len(text) <= 4 else 0
    if not valid_close_code(code):
        raise ValueError(
            f"code={text!r} must be a WebSocket close code a peer may send"
            " (1000-1003, 1007-1014, 3000-4999)"
        )
    return code


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"address={text!r} must be an IP address") from None


def _check_names(fault: str, params: Mapping[str, str]) -> None:
    known = PARAMETERS.get(fault, {})
    unknown = sorted(set(params) - set(known))
    if unknown:
        takes = ", ".join(known) or "no parameters"
        raise ValueError(f"{fault} takes {takes}; got {', '.join(unknown)}")


class LabControl:
    def __init__(self, parts: LabParts) -> None:
        self._parts = parts
        self._stacks: dict[str, contextlib.ExitStack] = {}
        self.active: dict[str, str] = {}

    def _hold(self, target: str, manager: contextlib.AbstractContextManager[Any]) -> None:
        self.clear(target)
        stack = contextlib.ExitStack()
        stack.enter_context(manager)
        self._stacks[target] = stack

    def clear(self, target: str) -> None:
        stack = self._stacks.pop(target, None)
        if stack is not None:
            stack.close()
        proxy = {"edge": self._parts.edge, "lb": self._parts.lb}.get(target)
        if proxy is not None:
            proxy.clear_fault()
        self.active.pop(target, None)

    def clear_all(self) -> None:
        for target in list(TARGETS):
            self.clear(target)

    async def inject(self, target: str, fault: str, params: dict[str, str]) -> str:
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")
        if fault not in TARGETS[target]:
            raise ValueError(
                f"{target} has no fault {fault!r}; it has {', '.join(TARGETS[target])}"
            )
        _check_names(fault, params)
        parts = self._parts
        if target in ("edge", "lb"):
            proxy = parts.edge if target == "edge" else parts.lb
            kwargs: dict[str, object] = {}
            if fault == "latency":
                kwargs["ms"] = _number("ms", params.get("ms", "100"), 0, MAX_LATENCY_MS)
            if fault == "half_open":
                direction = params.get("direction", "downstream")
                if direction not in ("upstream", "downstream"):
                    raise ValueError(f"direction={direction!r} must be upstream or downstream")
                kwargs["direction"] = direction
            if fault in ("reset_share", "blackhole_share"):
                every = _number("every", params.get("every", "2"), 2, MAX_SHARE_EVERY)
                if every != int(every):
                    raise ValueError(f"every={params['every']!r} must be a whole number")
                kwargs["every"] = int(every)
            self.clear(target)
            proxy.set_fault(fault, **kwargs)
        elif target == "dispatch":
            code = _close_code(params.get("code", "1012"))
            await parts.dispatch.close_all(code, "lab control")
            return f"dispatch closed every WebSocket with {code}"
        elif target == "backend" and fault == "slow":
            ms = _number("ms", params.get("ms", "500"), 1, MAX_SLOW_MS)
            self._hold(target, parts.backend.slow(ms))
        elif target == "backend":
            self._hold(target, parts.backend.stall())
        elif fault == "down":
            self._hold(target, parts.doh.down())
        else:
            self._hold(target, parts.doh.lie(_address(params.get("address", LB_ADDRESS))))
        detail = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
        self.active[target] = f"{fault}({detail})" if detail else fault
        return f"{target}: {self.active[target]}"


def make_control_app(control: LabControl, help_lines: Callable[[], list[str]]) -> web.Application:
    async def index(request: web.Request) -> web.Response:
        # Structured, so `curl | jq` reads it; the help as lines, not one string of \n.
        return web.json_response(
            {
                "endpoints": ENDPOINTS,
                "targets": TARGETS,
                "parameters": PARAMETERS,
                "active": control.active,
                "help": help_lines(),
            },
            dumps=_indented,
        )

    async def inject(request: web.Request) -> web.Response:
        target, fault = request.match_info["target"], request.match_info["fault"]
        try:
            message = await control.inject(target, fault, dict(request.query))
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)
        return web.json_response({"ok": message, "active": control.active})

    async def clear(request: web.Request) -> web.Response:
        target = request.match_info["target"]
        if target == "all":
            control.clear_all()
        elif target in TARGETS:
            control.clear(target)
        else:
            return web.json_response({"error": f"unknown target {target!r}"}, status=400)
        return web.json_response({"ok": f"cleared {target}", "active": control.active})

    app = web.Application(client_max_size=1024)
    app.router.add_get("/lab", index)
    app.router.add_post("/lab/fault/{target}/{fault}", inject)
    app.router.add_delete("/lab/fault/{target}", clear)
    return app


def _indented(payload: Any) -> str:
    return json.dumps(payload, indent=2) + "\n"
