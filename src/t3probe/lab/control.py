"""Hand-driven fault injection for the live lab: a tiny HTTP API on loopback.

curl -X POST   http://127.0.0.1:9109/lab/fault/edge/blackhole
curl -X DELETE http://127.0.0.1:9109/lab/fault/edge
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from t3probe.lab.faultproxy import ProxyFault
from t3probe.lab.topology import LB_ADDRESS, LabParts

PROXY_FAULTS = tuple(fault.value for fault in ProxyFault)
TARGETS: dict[str, tuple[str, ...]] = {
    "edge": PROXY_FAULTS,
    "lb": PROXY_FAULTS,
    "dispatch": ("close",),
    "backend": ("stall",),
    "doh": ("down", "lie"),
}


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
        parts = self._parts
        if target in ("edge", "lb"):
            proxy = parts.edge if target == "edge" else parts.lb
            self.clear(target)
            kwargs: dict[str, object] = {}
            if fault == "latency":
                kwargs["ms"] = float(params.get("ms", "100"))
            if fault == "half_open":
                kwargs["direction"] = params.get("direction", "downstream")
            proxy.set_fault(fault, **kwargs)
        elif target == "dispatch":
            code = int(params.get("code", "1012"))
            await parts.dispatch.close_all(code, "lab control")
            return f"dispatch closed every WebSocket with {code}"
        elif target == "backend":
            self._hold(target, parts.backend.stall())
        elif fault == "down":
            self._hold(target, parts.doh.down())
        else:
            self._hold(target, parts.doh.lie(params.get("address", LB_ADDRESS)))
        detail = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
        self.active[target] = f"{fault}({detail})" if detail else fault
        return f"{target}: {self.active[target]}"


def make_control_app(control: LabControl, help_text: Callable[[], str]) -> web.Application:
    async def index(request: web.Request) -> web.Response:
        return web.json_response(
            {"targets": TARGETS, "active": control.active, "help": help_text()}
        )

    async def inject(request: web.Request) -> web.Response:
        target, fault = request.match_info["target"], request.match_info["fault"]
        try:
            message = await control.inject(target, fault, dict(request.query))
        except (ValueError, TypeError) as err:
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
