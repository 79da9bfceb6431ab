"""Validated configuration dataclasses.

Each library module defines its own ``@dataclass`` config (defaults = the embedded default); ``okapi.params``
assembles them from params.yaml with :func:`from_dict`, which rejects unknown keys and wrong types, and each
dataclass's ``__post_init__`` checks ranges with :func:`check`. A bad value stops the stage with one sentence
naming the key and the allowed values, before any model is loaded or any request is sent.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad parameter; ``key`` is its dotted name as the message spells it (None when no one key is at fault)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key

    def renamed(self, key: str) -> ConfigError:
        """The same error naming the parameter ``key`` (as the user's file spells it) instead of ``self.key``."""
        if self.key is None or key == self.key:
            return self
        return ConfigError(str(self).replace(self.key, key, 1), key)


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ConfigError('<key> = <value> is invalid; allowed: <allowed>') unless ``ok``.

    ``key`` is written with the section the class is usually loaded as (``sft.learning_rate``); :func:`from_dict`
    renames it to the section actually being read (``sft_full.learning_rate``)."""
    if not ok:
        raise ConfigError(f"parameter {key} = {value!r} is invalid; allowed: {allowed}", key)


@functools.cache
def _choices(cls: type) -> dict[str, tuple[Any, ...]]:
    out = {}
    for name, tp in typing.get_type_hints(cls).items():
        if typing.get_origin(tp) is typing.Literal:
            out[name] = typing.get_args(tp)
    return out


def check_choices(obj: Any, section: str) -> None:
    """Check every ``Literal[...]`` field of a config dataclass, so a config built in code (not only one loaded by
    :func:`from_dict`) gets the same one-sentence error; call it first in ``__post_init__``."""
    for name, allowed in _choices(type(obj)).items():
        value = getattr(obj, name)
        check(value in allowed, f"{section}.{name}", value, ", ".join(map(repr, allowed)))


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
        raise ConfigError(errors[0] if errors else f"parameter {key} = {value!r} has the wrong type", key)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"parameter {key} = {value!r} is invalid; allowed: {', '.join(map(repr, args))}", key)
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"parameter {key} must be a mapping of {[f.name for f in dataclasses.fields(tp)]}", key)
        return from_dict(tp, value, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"parameter {key} = {value!r} must be a list", key)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"parameter {key} = {value!r} must be a mapping", key)
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"parameter {key} = {value!r} must be a number", key)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"parameter {key} = {value!r} must be an integer", key)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"parameter {key} = {value!r} must be true or false", key)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"parameter {key} = {value!r} must be a string", key)
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
            f"unknown parameter {where}.{unknown[0]}; allowed keys in {where}: {', '.join(sorted(names))}",
            f"{where}.{unknown[0]}",
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"parameters under {where}: {err}") from err
    except ConfigError as err:
        raise _in_section(err, names, where) from None


def _in_section(err: ConfigError, names: set[str], where: str) -> ConfigError:
    # A range check names its key with the class's usual section (``sft.batch_size``); the user's file may have
    # loaded the class as another one (``sft_full``) or nested (``teacher.embedded``): name the key as read.
    if err.key is None or err.key.startswith(f"{where}."):
        return err
    parts = err.key.split(".")
    for i, part in enumerate(parts):
        if part in names:
            return err.renamed(".".join([where, *parts[i:]]))
    return err


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
