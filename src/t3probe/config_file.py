"""Reading a config file, applying ``T3PROBE_*`` overrides, and turning every failure
into one operator-readable message.

:func:`config_from_text` is the pure core (text + environ -> config or error), so a
reload can validate a new config without touching the running one.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from t3probe.config import (
    LEG_CONFIGS,
    LEG_KINDS,
    RESOLVER_KINDS,
    DohResolverConfig,
    ProbeConfig,
    build_config,
)
from t3probe.redact import redact_text

MAX_CONFIG_BYTES = 1 << 20
ENV_PREFIX = "T3PROBE_"
# Union branch and validator names in pydantic's error locations are noise to an operator.
_LOCATION_NOISE = frozenset({*LEG_KINDS, *RESOLVER_KINDS, "function-after", "list"})
_KEYS_BY_LEG_KIND = {kind: set(cls.model_fields) for kind, cls in LEG_CONFIGS.items()}


class ConfigError(Exception):
    """The config cannot be used; the message names the offending field or value.

    Messages quote values, and a URL may carry credentials: they are redacted here, once
    for check-config, the start-up error, reload's log and the ``POST /-/reload`` answer.
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact_text(message))


def _format_location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in _LOCATION_NOISE:
            continue
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _other_kinds_key(loc: tuple[int | str, ...], error_type: str) -> str | None:
    """Say which leg kinds a key belongs to when it was given to another kind."""
    if error_type != "extra_forbidden" or len(loc) != 4 or loc[0] != "legs":
        return None
    key = str(loc[-1])
    owners = [kind for kind, keys in _KEYS_BY_LEG_KIND.items() if key in keys]
    if not owners:
        return None
    article = "an" if key[0] in "aeiou" else "a"
    return f"only {' and '.join(owners)} legs have {article} {key.replace('_', ' ')}"


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        loc = tuple(item["loc"])
        message = _other_kinds_key(loc, item["type"]) or item["msg"].removeprefix("Value error, ")
        lines.append(f"{_format_location(loc)}: {message}")
    return "\n".join(lines)


# Variables that configure the process rather than the probe, and the test suite's own
# reserved prefix; any other T3PROBE_* name is a typo and is refused like an unknown key.
PROCESS_VARIABLES = frozenset(
    {
        "T3PROBE_LOG_LEVEL",
        "T3PROBE_LOOPBACK_ONLY",
        "T3PROBE_ALLOWED_NETWORKS",
        "T3PROBE_EVENT_LOOP",
    }
)
RESERVED_PREFIX = "T3PROBE_TEST_"


def _unknown_variables(environ: Mapping[str, str]) -> list[str]:
    keys = {f"{ENV_PREFIX}{key.upper()}" for key in ProbeConfig.model_fields}
    return sorted(
        name
        for name in environ
        if name.startswith(ENV_PREFIX)
        and name not in keys
        and name not in PROCESS_VARIABLES
        and not name.startswith(RESERVED_PREFIX)
    )


def environment_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``T3PROBE_<KEY>`` values for top-level config keys, parsed as the key needs.

    Keys holding lists or mappings (``legs``) take JSON; scalars are passed as text for
    the model to convert, so a bad value is reported by the model naming its key.
    """
    unknown = _unknown_variables(environ)
    if unknown:
        known = ", ".join(f"{ENV_PREFIX}{key.upper()}" for key in ProbeConfig.model_fields)
        raise ConfigError(f"{unknown[0]}: not a t3probe setting (config keys: {known}; see README)")
    overrides: dict[str, Any] = {}
    for key, field in ProbeConfig.model_fields.items():
        name = f"{ENV_PREFIX}{key.upper()}"
        if name not in environ:
            continue
        text = environ[name]
        if _takes_json(field.annotation):
            try:
                overrides[key] = json.loads(text, object_pairs_hook=_unique_keys)
            except _DuplicateKey as err:
                raise ConfigError(f"{name}: {err}") from err
            except (ValueError, RecursionError) as err:
                raise ConfigError(f"{name}: {key} must be JSON: {err}") from err
        else:
            overrides[key] = text
    return overrides


def _takes_json(annotation: Any) -> bool:
    if annotation in (list, dict) or get_origin(annotation) in (list, dict):
        return True
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _override_names(environ: Mapping[str, str]) -> list[str]:
    return sorted(
        name
        for name in environ
        if name.startswith(ENV_PREFIX)
        and name[len(ENV_PREFIX) :].split("__")[0].lower() in ProbeConfig.model_fields
    )


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that refuses a key given twice (json would keep the last silently)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(f"key {key!r} given twice")
        seen[key] = value
    return seen


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable keys are refused later with a clearer message
            if duplicate:
                line = key_node.start_mark.line + 1
                raise _DuplicateKey(f"line {line}: key {key!r} given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_config_text(text: str, source: str) -> dict[str, Any]:
    """YAML text to a mapping of config keys; ``source`` names it in errors."""
    try:
        data: Any = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except _DuplicateKey as err:
        raise ConfigError(f"{source}: {err}") from err
    except (yaml.YAMLError, RecursionError) as err:
        # RecursionError: a document nested deeper than the parser can follow.
        raise ConfigError(f"{source}: not valid YAML: {str(err)[:300]}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    odd = [key for key in data if not isinstance(key, str)]
    if odd:
        raise ConfigError(f"{source}: top-level key {odd[0]!r} is not a config key name")
    return data


def config_from_text(text: str | None, environ: Mapping[str, str], source: str) -> ProbeConfig:
    """Pure: the file's text (None for no file) with ``environ``'s overrides on top."""
    data = parse_config_text(text, source) if text is not None else {}
    data.update(environment_overrides(environ))
    try:
        return build_config(data)
    except ValidationError as err:
        message = format_validation_error(err)
        if "legs: Field required" in message:
            message += " (t3probe never falls back to a built-in target: declare legs)"
        overrides = _override_names(environ)
        if overrides:
            message += f"\n(environment overrides in effect: {', '.join(overrides)})"
        raise ConfigError(message) from err


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> ProbeConfig:
    """Read ``path`` (or no file), apply the environment's overrides, check CA files."""
    text: str | None = None
    if path is not None:
        try:
            raw = path.read_bytes()[: MAX_CONFIG_BYTES + 1]
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config file: {err.strerror}") from err
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: config file larger than {MAX_CONFIG_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
    config = config_from_text(text, os.environ if environ is None else environ, str(path))
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


def _derived_values(config: ProbeConfig) -> dict[str, float]:
    """Settings left unset in the file, with the value the probe derives for them."""
    effective = {
        "connect_timeout_seconds": config.effective_connect_timeout,
        "probe_stall_seconds": config.effective_probe_stall,
        "flap_window_seconds": config.effective_flap_window,
    }
    return {key: value for key, value in effective.items() if getattr(config, key) is None}


def dump_config(config: ProbeConfig) -> str:
    """The effective config as YAML: derived defaults are printed with the value they
    take (a `null` would leave the operator to work it out) and say where it comes from."""
    derived = _derived_values(config)
    data = config.model_dump(mode="json")
    data.update(derived)
    lines = yaml.safe_dump(data, sort_keys=False).splitlines()
    # Top-level keys start at column 0, so a leg's own key of the same name cannot match.
    notes = {f"{key}:": "  # derived from watchdog_seconds" for key in derived}
    return "".join(line + notes.get(line.split(" ", 1)[0], "") + "\n" for line in lines)
