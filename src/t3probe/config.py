"""Configuration models: what a valid probe config is.

Pure: validation only, no I/O and no environment. Reading the file and applying
``T3PROBE_*`` overrides live in :mod:`t3probe.config_file`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    field_validator,
    model_validator,
)

from t3probe.degradation import (
    DEFAULT_LOSS_SHARE,
    DEFAULT_MARGIN_SECONDS,
    DEFAULT_RATIO,
    DegradationPolicy,
)

MAX_LEGS = 10000
# Connections per leg, and in all: each is a socket, a heartbeat and a watchdog.
MAX_CONNECTIONS_PER_LEG = 64
MAX_CONNECTIONS = MAX_LEGS
DEFAULT_BURST_WINDOW_SECONDS = 1.0
MAX_SEGMENTS_PER_LEG = 16
PROBE_STALL_SHARE = 0.1
FLAP_WATCHDOGS = 3.0
_LABEL_VALUE = r"^[a-z][a-z0-9_]{0,31}$"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
# What a leg is for: `path` measures a route (the default); `wall` is a wall-off guard, an
# http leg on a protected path that must keep answering the auth answer (401, 403, a login
# redirect). Alerts tell them apart by t3probe_leg_info's `role` label: a closed set.
LegRole = Literal["path", "wall"]
LEG_ROLES: tuple[str, ...] = get_args(LegRole)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        # YAML reads `true` as a boolean and pydantic would take it as 1: `heartbeat_seconds:
        # true` would be one second. A number must be written as a number.
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if field is not None and isinstance(value, bool) and _numeric(field.annotation):
                    raise ValueError(f"{key}: {str(value).lower()} is not a number")
        return data


class SystemResolverConfig(_Strict):
    kind: Literal["system"] = "system"


def _numeric(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    return any(_numeric(arg) for arg in get_args(annotation))


def _address_text(value: Any) -> Any:
    # YAML turns `true`/`1` into bool/int, which pydantic would read as 0.0.0.1.
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IP address (quote addresses as text)")
    return value


class PinnedResolverConfig(_Strict):
    """Connect to ``address`` while Host, SNI and certificate checks stay the URL's host."""

    kind: Literal["pinned"]
    address: Annotated[IPvAnyAddress, BeforeValidator(_address_text)]


class DohResolverConfig(_Strict):
    """RFC 8484 DNS over HTTPS (HTTP/2 or HTTP/1.1 by ALPN), servers tried in order with a
    back-off for those that failed, answers served stale (RFC 8767): docs/doh.md."""

    kind: Literal["doh"]
    servers: Annotated[list[str], Field(min_length=1, max_length=8)]
    timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 2.0
    ca_file: Path | None = None
    max_stale_seconds: Annotated[float, Field(ge=0, le=7 * 86400)] = 86400.0
    min_ttl_seconds: Annotated[float, Field(ge=0, le=3600)] = 5.0
    # A hostile or broken server's TTL of 2^31-1 would pin an answer for 68 years;
    # resolvers cap it the same way (unbound's cache-max-ttl, BIND's max-cache-ttl).
    max_ttl_seconds: Annotated[float, Field(gt=0, le=86400)] = 3600.0
    # A server that failed is skipped for this long (doubling with each failure in a
    # row, up to 8x), so a dead first server does not cost its timeout at every refresh.
    server_backoff_seconds: Annotated[float, Field(ge=0, le=3600)] = 30.0

    @field_validator("servers")
    @classmethod
    def _https_servers(cls, servers: list[str]) -> list[str]:
        for server in servers:
            parts = urlsplit(server)
            if parts.scheme != "https" or not parts.hostname:
                raise ValueError(f"DoH server {server!r} must be an https:// URL")
        return servers

    @model_validator(mode="after")
    def _ttl_bounds(self) -> DohResolverConfig:
        if self.min_ttl_seconds > self.max_ttl_seconds:
            raise ValueError(
                f"min_ttl_seconds ({self.min_ttl_seconds:g}) must not exceed"
                f" max_ttl_seconds ({self.max_ttl_seconds:g})"
            )
        return self


ResolverConfig = Annotated[
    SystemResolverConfig | PinnedResolverConfig | DohResolverConfig,
    Field(discriminator="kind"),
]


class _LegBase(_Strict):
    """What every leg kind shares; each kind adds its own keys in its own class."""

    # The URL schemes a leg of this kind accepts, first the plain one.
    schemes: ClassVar[tuple[str, ...]]
    # Whether the leg holds one long-lived connection whose age at death is measured.
    holds_connection: ClassVar[bool]

    name: Annotated[str, Field(pattern=_LABEL_VALUE)]
    url: str
    resolver: ResolverConfig = SystemResolverConfig()
    segments: Annotated[
        list[Annotated[str, Field(pattern=_LABEL_VALUE)]],
        Field(min_length=1, max_length=MAX_SEGMENTS_PER_LEG),
    ]
    ca_file: Path | None = None
    require_header: str | None = None
    role: LegRole = "path"
    forbid_addresses: Annotated[
        list[Annotated[IPvAnyNetwork, BeforeValidator(_address_text)]], Field(max_length=64)
    ] = []
    # Degraded above this round trip, whatever the leg's learnt baseline says.
    rtt_threshold_seconds: Annotated[float, Field(gt=0, le=3600)] | None = None
    # Independent connections over the route, each its own TCP connection, heartbeat and
    # watchdog: a load balancer spreads them as it spreads users, so a fault that takes
    # some of its backends shows as a share of them (the blast radius).
    connections: Annotated[int, Field(ge=1, le=MAX_CONNECTIONS_PER_LEG)] = 1

    @field_validator("url")
    @classmethod
    def _absolute_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if not parts.scheme or not parts.hostname:
            raise ValueError(f"{url!r} is not an absolute URL with a host")
        try:
            _ = parts.port
        except ValueError as err:
            raise ValueError(f"{url!r} has an invalid port") from err
        return url

    @field_validator("segments")
    @classmethod
    def _unique_segments(cls, segments: list[str]) -> list[str]:
        if len(set(segments)) != len(segments):
            raise ValueError("segments must not repeat")
        return segments

    @field_validator("require_header")
    @classmethod
    def _header_name(cls, header: str | None) -> str | None:
        if header is not None and not _HEADER_NAME.match(header):
            raise ValueError(f"{header!r} is not a valid HTTP header name")
        return header

    @model_validator(mode="after")
    def _route_rules(self) -> _LegBase:
        scheme = urlsplit(self.url).scheme
        if scheme not in self.schemes:
            allowed = " or ".join(f"{s}://" for s in self.schemes)
            kind = getattr(self, "kind", "")
            raise ValueError(f"url: a {kind} leg needs a {allowed} URL, got {scheme}://")
        if self.role == "wall" and "expected_status" not in type(self).model_fields:
            raise ValueError(
                "role: a wall guard checks an HTTP status, so it must be an http leg,"
                f" not {getattr(self, 'kind', '')}"
            )
        if isinstance(self.resolver, PinnedResolverConfig):
            for network in self.forbid_addresses:
                if self.resolver.address in network:
                    raise ValueError(
                        f"forbid_addresses: pinned address {self.resolver.address} lies in"
                        f" forbidden range {network}"
                    )
        return self

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None  # guaranteed by _absolute_url
        return host

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        if parts.port is not None:
            return parts.port
        return 443 if parts.scheme in ("https", "wss") else 80

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme in ("https", "wss")


class WebSocketLegConfig(_LegBase):
    """A persistent WebSocket to an echo, heartbeating through it."""

    schemes: ClassVar[tuple[str, ...]] = ("ws", "wss")
    holds_connection: ClassVar[bool] = True

    kind: Literal["websocket"]


class HttpLegConfig(_LegBase):
    """A GET every heartbeat; any answer in ``expected_status`` means the process is alive."""

    schemes: ClassVar[tuple[str, ...]] = ("http", "https")
    holds_connection: ClassVar[bool] = False

    kind: Literal["http"]
    expected_status: (
        Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(max_length=64)] | None
    ) = None

    @model_validator(mode="after")
    def _wall_expects_the_auth_answer(self) -> HttpLegConfig:
        if self.role != "wall":
            return self
        if self.expected_status is None:
            raise ValueError(
                "expected_status: a wall guard (role: wall) must list the auth answer it"
                " expects, e.g. [401, 403] or [302] for a login redirect"
            )
        open_answers = [status for status in self.expected_status if 200 <= status < 300]
        if open_answers:
            raise ValueError(
                f"expected_status: {open_answers[0]} is the answer of an open wall; a wall"
                " guard (role: wall) expects the auth answer (401, 403, a login redirect)"
            )
        return self

    def status_is_alive(self, status: int) -> bool:
        if self.expected_status is None:
            return status < 500
        return status in self.expected_status


# A new leg kind adds its class here (and its factory in t3probe.legs.registry): the
# plain union types the code, the discriminated one below parses configs.
AnyLegConfig = WebSocketLegConfig | HttpLegConfig
LegConfig = Annotated[AnyLegConfig, Field(discriminator="kind")]


def _by_tag(union: Any) -> dict[str, type[BaseModel]]:
    """The member classes of a discriminated union by their ``kind`` tag."""
    members = get_args(get_args(union)[0])
    return {get_args(member.model_fields["kind"].annotation)[0]: member for member in members}


LEG_CONFIGS: dict[str, type[BaseModel]] = _by_tag(LegConfig)
RESOLVER_CONFIGS: dict[str, type[BaseModel]] = _by_tag(ResolverConfig)
LEG_KINDS: tuple[str, ...] = tuple(LEG_CONFIGS)
RESOLVER_KINDS: tuple[str, ...] = tuple(RESOLVER_CONFIGS)


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6) into its parts."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{listen!r} is not HOST:PORT")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"{listen!r} has no host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"listen host {host!r} must be an IP address or localhost") from None
    return host, port


class ProbeConfig(_Strict):
    listen: str = "0.0.0.0:9108"
    heartbeat_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    watchdog_seconds: Annotated[float, Field(gt=0, le=7200)] = 20.0
    attribution_window_seconds: Annotated[float, Field(ge=0, le=86400)] = 20.0
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=600)] | None = None
    # Default: a tenth of the watchdog (2 s for production timings).
    probe_stall_seconds: Annotated[float, Field(gt=0, le=3600)] | None = None
    # A leg that dropped flap_drops times within flap_window_seconds (default three
    # watchdogs) is flapping: it convicts its segments even while momentarily up.
    flap_window_seconds: Annotated[float, Field(ge=0, le=86400)] | None = None
    flap_drops: Annotated[int, Field(ge=2, le=1000)] = 2
    # Drops of several connections of one leg within this interval are one `burst` event.
    burst_window_seconds: Annotated[float, Field(gt=0, le=3600)] = DEFAULT_BURST_WINDOW_SECONDS
    # A leg is degraded when the median of its recent round trips exceeds both ratio x its
    # learnt baseline and baseline + margin, or when it lost loss_share of its recent
    # heartbeats (docs/degradation.md).
    degraded_rtt_ratio: Annotated[float, Field(gt=1, le=1000)] = DEFAULT_RATIO
    degraded_rtt_margin_seconds: Annotated[float, Field(ge=0, le=3600)] = DEFAULT_MARGIN_SECONDS
    degraded_loss_share: Annotated[float, Field(gt=0, le=1)] = DEFAULT_LOSS_SHARE
    backoff_initial_seconds: Annotated[float, Field(gt=0, le=600)] = 1.0
    backoff_max_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    event_buffer_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    max_message_bytes: Annotated[int, Field(ge=128, le=1 << 20)] = 4096
    max_http_body_bytes: Annotated[int, Field(ge=0, le=1 << 24)] = 65536
    legs: Annotated[list[LegConfig], Field(min_length=1, max_length=MAX_LEGS)]

    @field_validator("listen")
    @classmethod
    def _listen(cls, listen: str) -> str:
        parse_listen(listen)
        return listen

    @model_validator(mode="after")
    def _cross_field(self) -> ProbeConfig:
        if self.watchdog_seconds <= self.heartbeat_seconds:
            raise ValueError(
                f"watchdog_seconds ({self.watchdog_seconds:g}) must be greater than"
                f" heartbeat_seconds ({self.heartbeat_seconds:g})"
            )
        if self.effective_probe_stall >= self.watchdog_seconds:
            raise ValueError("probe_stall_seconds must be less than watchdog_seconds")
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds must be at least backoff_initial_seconds")
        for index, leg in enumerate(self.legs):
            resolver = leg.resolver
            if isinstance(resolver, DohResolverConfig):
                budget = len(resolver.servers) * resolver.timeout_seconds
                if budget >= self.effective_connect_timeout:
                    raise ValueError(
                        f"legs[{index}].resolver: {len(resolver.servers)} DoH servers x"
                        f" timeout_seconds {resolver.timeout_seconds:g} must fit inside the"
                        f" connect timeout ({self.effective_connect_timeout:g}s), or a DoH"
                        " outage would look like a connect timeout"
                    )
        total = sum(leg.connections for leg in self.legs)
        if total > MAX_CONNECTIONS:
            raise ValueError(
                f"legs: {total} connections in all (the sum of each leg's connections) exceed"
                f" {MAX_CONNECTIONS}; split the legs across probes"
            )
        names = [leg.name for leg in self.legs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"legs: duplicate leg name(s) {', '.join(duplicates)}")
        return self

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    @property
    def effective_probe_stall(self) -> float:
        if self.probe_stall_seconds is not None:
            return self.probe_stall_seconds
        return PROBE_STALL_SHARE * self.watchdog_seconds

    @property
    def effective_flap_window(self) -> float:
        if self.flap_window_seconds is not None:
            return self.flap_window_seconds
        return FLAP_WATCHDOGS * self.watchdog_seconds

    @property
    def effective_connect_timeout(self) -> float:
        return self.connect_timeout_seconds or self.watchdog_seconds

    def degradation_policy(self, leg: AnyLegConfig) -> DegradationPolicy:
        return DegradationPolicy(
            ratio=self.degraded_rtt_ratio,
            margin_seconds=self.degraded_rtt_margin_seconds,
            threshold_seconds=leg.rtt_threshold_seconds,
            loss_share=self.degraded_loss_share,
        )

    @property
    def segments(self) -> list[str]:
        seen: dict[str, None] = {}
        for leg in self.legs:
            for segment in leg.segments:
                seen.setdefault(segment)
        return list(seen)


def build_config(data: dict[str, Any]) -> ProbeConfig:
    """Validate config data. Pure: the process environment is never consulted."""
    return ProbeConfig.model_validate(data)
