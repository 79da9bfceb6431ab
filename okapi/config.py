"""Validated configuration dataclasses.

Each library module defines its own ``@dataclass`` config (defaults = the embedded default); ``okapi.params``
assembles them from params.yaml with :func:`from_dict`, which rejects unknown keys and wrong types, and each
dataclass's ``__post_init__`` checks ranges with :func:`check`. A bad value stops the stage with one sentence
naming the key and the allowed values, before any model is loaded or any request is sent.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    pass


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ConfigError('<key> = <value> is invalid; allowed: <allowed>') unless ``ok``."""
    if not ok:
        raise ConfigError(f"parameter {key} = {value!r} is invalid; allowed: {allowed}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"parameter {key} = {value!r} has the wrong type")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"parameter {key} = {value!r} is invalid; allowed: {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"parameter {key} must be a mapping of {[f.name for f in dataclasses.fields(tp)]}")
        return from_dict(tp, value, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"parameter {key} = {value!r} must be a list")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"parameter {key} = {value!r} must be a mapping")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"parameter {key} = {value!r} must be a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"parameter {key} = {value!r} must be an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"parameter {key} = {value!r} must be true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"parameter {key} = {value!r} must be a string")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError naming ``where.key``."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown parameter {where}.{unknown[0]}; allowed keys in {where}: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"parameters under {where}: {err}") from err


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
