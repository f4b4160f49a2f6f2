"""Reading a config file and turning every failure into one operator-readable message."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from t3probe.config import DohResolverConfig, ProbeConfig, build_config

MAX_CONFIG_BYTES = 1 << 20
ENV_PREFIX = "T3PROBE_"


class ConfigError(Exception):
    """The config cannot be used; the message names the offending field or value."""


def _format_location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("system", "pinned", "doh", "function-after", "list"):
            # Union branch and validator names are noise to an operator.
            continue
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        where = _format_location(tuple(item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "\n".join(lines)


def load_config(path: Path | None) -> ProbeConfig:
    data: Any = {}
    if path is not None:
        try:
            raw = path.read_bytes()[: MAX_CONFIG_BYTES + 1]
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config file: {err.strerror}") from err
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: config file larger than {MAX_CONFIG_BYTES} bytes")
        try:
            data = yaml.safe_load(raw.decode("utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
        odd = [key for key in data if not isinstance(key, str)]
        if odd:
            raise ConfigError(f"{path}: top-level key {odd[0]!r} is not a config key name")
    try:
        config = build_config(data)
    except ValidationError as err:
        message = format_validation_error(err)
        if "legs: Field required" in message:
            message += " (t3probe never falls back to a built-in target: declare legs)"
        overrides = sorted(
            name
            for name in os.environ
            if name.startswith(ENV_PREFIX)
            and name[len(ENV_PREFIX) :].split("__")[0].lower() in ProbeConfig.model_fields
        )
        if overrides:
            message += f"\n(environment overrides in effect: {', '.join(overrides)})"
        raise ConfigError(message) from err
    _check_ca_files(config)
    return config


def _check_ca_files(config: ProbeConfig) -> None:
    """Load every CA file now, so a typo fails check-config, not the running daemon."""
    for index, leg in enumerate(config.legs):
        places = [(f"legs[{index}].ca_file", leg.ca_file)]
        if isinstance(leg.resolver, DohResolverConfig):
            places.append((f"legs[{index}].resolver.ca_file", leg.resolver.ca_file))
        for where, path in places:
            if path is None:
                continue
            try:
                ssl.create_default_context(cafile=str(path))
            except (OSError, ssl.SSLError) as err:
                raise ConfigError(f"{where}: cannot load CA file {path}: {err}") from err


def dump_config(config: ProbeConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
