"""Typed, frozen configs from TOML, YAML or JSON files plus ``key=value`` overrides.

Nothing is executed: files are parsed with ``tomllib``, ``yaml.safe_load`` or ``json``. Each
config class is a frozen dataclass that validates itself in ``__post_init__``; this module adds
what a file can get wrong on top of that: unknown keys, wrong types, malformed overrides. Every
error is one ``ValueError`` whose message names the offending field by its dotted path.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import yaml


def load_file(path: str | Path) -> dict:
    """Parse a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file into a dict (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ValueError(
                f"config file must end in .toml, .yaml, .yml or .json, got {path.name!r}"
            )
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"config file {path.name!r} is not valid: {first}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path.name!r} must hold a mapping at the top level")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` → (["a", "b"], 3); the value is read as JSON when it parses, else a string."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must have the form key.path=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {text!r} has an empty key")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str], defaults: dict | None = None) -> dict:
    """Return a copy of ``data`` with each ``key.path=value`` override set.

    When an override reaches into a top-level section that ``data`` lacks, the section starts
    from ``defaults`` (so ``env.options.d=3`` changes only d of the default options).
    """
    data = json.loads(json.dumps(data))
    for text in overrides:
        path, value = parse_override(text)
        if len(path) > 1 and path[0] not in data and defaults and path[0] in defaults:
            if isinstance(defaults[path[0]], dict):
                data[path[0]] = json.loads(json.dumps(defaults[path[0]]))
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def _check_type(path: str, value, annotation):
    """Coerce/validate one field value against its annotation; raise naming ``path``."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(annotation):
            if option is type(None) and value is None:
                return None
            try:
                return _check_type(path, value, option)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if errors else f"{path} has an unsupported type")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{path} must be a string, got {value!r}")
        return value
    if annotation is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path} must be a list, got {value!r}")
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{path} must be a table/mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, path)
    return value


def from_dict(cls, data, path: str = ""):
    """Build the frozen dataclass ``cls`` from a mapping, rejecting unknown keys and bad types.

    Nested dataclass fields are built recursively. Errors name the dotted field path; errors
    raised by ``cls.__post_init__`` are prefixed with the section path.
    """
    where = path or cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a table/mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{path}." if path else ""
        raise ValueError(f"unknown key {prefix}{unknown[0]!r}; allowed keys are {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        field_path = f"{path}.{name}" if path else name
        kwargs[name] = _check_type(field_path, value, hints[name])
    try:
        return cls(**kwargs)
    except ValueError as err:
        text = str(err)
        if path and not text.startswith(f"{path}."):
            text = f"{path}: {text}"
        raise ValueError(text) from None
    except TypeError as err:
        raise ValueError(f"{where}: {err}") from None


def declared_defaults(obj) -> dict:
    """``obj`` (a dataclass built from its defaults) as JSON-able data, with every field whose
    declared default is None set back to None: such fields are resolved by ``__post_init__``
    from the others (``FilterConfig.loss`` from its noise), so a section copied from these
    defaults and then overridden is resolved again, not pinned to the defaults' resolution."""
    from rmft_theory.io import to_jsonable

    data = to_jsonable(obj)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.default is None:
            data[f.name] = None
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            data[f.name] = declared_defaults(value)
    return data


def load(cls, path: str | Path | None = None, overrides: list[str] = ()):
    """Load ``cls`` from an optional file and ``key=value`` overrides."""
    data = load_file(path) if path is not None else {}
    try:
        defaults = declared_defaults(cls())
    except (TypeError, ValueError):  # no usable defaults
        defaults = None
    return from_dict(cls, apply_overrides(data, list(overrides), defaults))
