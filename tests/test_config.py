from dataclasses import dataclass, field

import pytest

from common.config import ConfigError, deep_merge, from_dict, parse_overrides, resolve_profile


@dataclass
class Inner:
    lr: float = 1.0
    sizes: tuple[int, ...] = (1, 2)


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def test_nested_build_and_coercion():
    cfg = from_dict(Outer, {"name": "y", "inner": {"lr": 3, "sizes": [4, 5]}})
    assert cfg == Outer("y", Inner(3.0, (4, 5)))


def test_unknown_key_is_named_with_its_path():
    with pytest.raises(ConfigError, match="unknown config key 'inner.lrr'"):
        from_dict(Outer, {"inner": {"lrr": 1}})
    with pytest.raises(ConfigError, match="'inner.lr' expects float"):
        from_dict(Outer, {"inner": {"lr": "fast"}})


def test_profiles_overlay_the_base():
    raw = {"train": {"steps": 10, "lr": 1.0}, "profiles": {"smoke": {"train": {"steps": 2}}}}
    assert resolve_profile(raw, "smoke") == {"train": {"steps": 2, "lr": 1.0}}
    assert resolve_profile(raw, None) == {"train": {"steps": 10, "lr": 1.0}}
    with pytest.raises(ConfigError, match="profile 'paper' is not defined"):
        resolve_profile(raw, "paper")
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        resolve_profile(raw, "fast")


def test_overrides():
    assert parse_overrides(["train.lr=1e-3", "data.size=32"]) == {"train": {"lr": 1e-3}, "data": {"size": 32}}
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_overrides(["oops"])
