"""Config mappings (YAML, JSON, ``--set``) -> the dataclasses the code uses, validated whole.

One mechanism for every config in the project (recipes, ranker and tokenizer configs, stage
sections): pydantic validates the dataclass tree as it is declared, so types, ``Literal`` choices,
range annotations (``Annotated[float, Gt(0)]``) and each class's own ``__post_init__`` checks all
run when the file is read, not when the stage that uses a value starts hours later. Unknown keys
are errors at any depth, and every problem is reported at once with the key's dotted path, e.g.
``rl.dapo.learning_rat: unknown key (rl.dapo has: alpha, bf16, ...)``.

A partly given section is laid over its defaults (``base``), so ``sft: {training: {epochs: 1}}``
keeps the SFT stage's own learning rate rather than the generic ``TrainingSettings`` one.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from data.errors import ConfigError

T = TypeVar("T")
STRICT = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


def build_config(cls: type[T], values: Mapping[str, Any] | None, where: str = "", base: T | None = None) -> T:
    """``cls`` from ``values`` laid over ``base`` (default ``cls()``); a ``ConfigError`` lists every problem."""
    base = base if base is not None else cls()
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping of {cls.__name__} fields, got "
                          f"{type(values).__name__} {values!r}")
    merged = _overlay(base, values)
    try:
        return _adapter(cls).validate_python(merged)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(error, cls, where) for error in exc.errors())) from None


def parse_sets(pairs: Sequence[str]) -> dict[str, Any]:
    """``--set dotted.key=value`` strings -> ``{"dotted.key": value}``, values read as YAML (0.3, true, [1, 2])."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects dotted.key=value, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key.strip()}: the value is not valid YAML ({exc})") from None
    return out


def apply_sets(data: Mapping[str, Any], sets: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with each dotted key of ``sets`` assigned (missing sections are created)."""
    out = _deep_copy(data)
    for dotted, value in sets.items():
        node = out
        *parents, leaf = dotted.split(".")
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: {'.'.join(parents[:depth + 1])} is {child!r}, not a section")
            node = child
        node[leaf] = value
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    for klass in _dataclasses_in(cls):
        # read by pydantic when it validates a standard-library dataclass
        klass.__pydantic_config__ = STRICT  # type: ignore[attr-defined]
    return TypeAdapter(cls)


def _dataclasses_in(hint: Any, seen: set | None = None) -> set[type]:
    """Every dataclass reachable from ``hint`` through field types (unions, lists, dicts, Annotated)."""
    seen = set() if seen is None else seen
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if hint in seen:
            return seen
        seen.add(hint)
        for field_type in typing.get_type_hints(hint, include_extras=True).values():
            _dataclasses_in(field_type, seen)
    else:
        for arg in typing.get_args(hint):
            _dataclasses_in(arg, seen)
    return seen


def _field_dataclass(hint: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), if any."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        return options[0] if len(options) == 1 else None
    return None


def _overlay(base: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """``base``'s fields as plain data with ``values`` laid over them, recursing into dataclass sections."""
    hints = typing.get_type_hints(type(base))
    out = {f.name: _plain(getattr(base, f.name)) for f in dataclasses.fields(base) if f.init}
    for key, value in values.items():
        section = _field_dataclass(hints[key]) if key in hints else None
        current = getattr(base, key, None)
        if section is not None and isinstance(value, Mapping) and isinstance(current, section):
            out[key] = _overlay(current, value)
        else:
            out[key] = value  # unknown keys stay, for the validator to report with their path
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _path(where: str, loc: Sequence[Any]) -> str:
    path = where
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (isinstance(part, str) and (part.startswith(("function-", "lax-", "json-")) or "[" in part)):
            path += f".{part}" if path else str(part)
    return path or "config"


def _class_at(cls: type, loc: Sequence[Any]) -> type | None:
    """The dataclass that holds the last key of ``loc``, walking field types from ``cls``."""
    current: Any = cls
    for part in loc:
        if isinstance(part, int):
            continue
        section = _field_dataclass(current) if current is not None else None
        hints = typing.get_type_hints(section) if section is not None else {}
        if part not in hints:
            return section if part == loc[-1] else None
        current = hints[part]
        args = typing.get_args(current)
        if typing.get_origin(current) in (list, dict) and args:
            current = args[-1]
    return _field_dataclass(current)


def _describe(error: Mapping[str, Any], cls: type, where: str) -> str:
    loc = error["loc"]
    path = _path(where, loc)
    if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        holder = _class_at(cls, loc)
        known = ", ".join(sorted(f.name for f in dataclasses.fields(holder))) if holder else "?"
        parent = _path(where, loc[:-1]) if loc[:-1] or where else "the top level"
        return f"{path}: unknown key ({parent} has: {known})"
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error["type"] in ("value_error", "assertion_error"):
        return f"{path}: {message}"
    return f"{path}: {message}, got {error.get('input')!r}"
