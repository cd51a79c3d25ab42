"""Typed experiment configs: YAML -> nested dataclasses, with profiles as overlays.

An experiment file holds the base config and a `profiles:` mapping (`smoke`, `short`, `paper`)
whose entries are deep-merged over it. Unknown keys are an error that names the dotted key.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
PROFILES = ("smoke", "short", "paper")


class ConfigError(ValueError):
    """A config that does not match its schema."""


def deep_merge(base: dict, overlay: dict) -> dict:
    """Return `base` with `overlay` merged in, recursing into nested mappings."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            hint = " (YAML reads an unquoted no/off/yes/on as a boolean: quote it)" if isinstance(value, bool) else ""
            raise ConfigError(f"config key '{path}' expects one of {', '.join(map(repr, choices))}, got {value!r}{hint}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, path)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, path) if len(args) == 1 else value
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return origin(_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"config key '{path}' expects {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, path: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys raise ConfigError naming them."""
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{path or cls.__name__}' expects a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown config key '{where}{unknown[0]}' for {cls.__name__} "
            f"(known: {', '.join(sorted(fields))})"
        )
    missing = sorted(k for k, f in fields.items() if k not in data and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        where = f"{path}." if path else ""
        raise ConfigError(f"config has no '{where}{missing[0]}' (required by {cls.__name__})")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(hints[k], v, f"{path}.{k}" if path else k) for k, v in data.items()}
    for k, v in kwargs.items():
        _check_bounds(fields[k], v, f"{path}.{k}" if path else k)
    return cls(**kwargs)


def at_least(low: float, strict: bool = False) -> dict:
    """Field metadata: the value must be >= low (> low if strict); `from_dict` checks it."""
    return {"min": low, "strict": strict}


def _check_bounds(f: dataclasses.Field, value: Any, path: str) -> None:
    low = f.metadata.get("min")
    if low is None or value is None:
        return
    strict = f.metadata.get("strict", False)
    if (value <= low) if strict else (value < low):
        raise ConfigError(f"config key '{path}' must be {'>' if strict else '>='} {low:g}, got {value!r}")


def to_dict(cfg: Any) -> dict:
    """Plain-dict view of a (nested) dataclass config, tuples as lists (YAML/JSON friendly)."""
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def resolve_profile(raw: dict, profile: str | None) -> dict:
    """Apply the named profile overlay of an experiment mapping and drop the `profiles` table."""
    profiles = raw.get("profiles", {}) or {}
    base = {k: v for k, v in raw.items() if k != "profiles"}
    if profile is None:
        return base
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}' (choose from {', '.join(PROFILES)})")
    if profile not in profiles:
        raise ConfigError(f"profile '{profile}' is not defined in this experiment config")
    return deep_merge(base, profiles[profile] or {})


def parse_overrides(pairs: list[str]) -> dict:
    """`["train.lr=1e-3", "data.size=32"]` -> nested mapping with YAML-typed values."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override '{pair}' must look like key.sub=value")
        key, value = pair.split("=", 1)
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        try:
            node[leaf] = _scalar(value)
        except ConfigError as err:
            raise ConfigError(f"--set {key}: {err}") from None
    return out


def _scalar(text: str):
    """YAML-typed value; `1e-3` is a float here (YAML 1.1 would read it as a string)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"override value {text!r} is not valid YAML ({str(err).splitlines()[0]})") from None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
