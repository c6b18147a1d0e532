"""Command-line flags generated from config dataclasses: one flag per field, one way to read it.

Every field of a config dataclass (`SweepConfig`, a task's `Config`) becomes a `Field`: its
scope ("sweep" or "task"), name, type and default, and a reader from the type annotation
(`reader`: int, float, str, bool, tuple[T, ...] as a comma list, `X | None` with "none").
`add_flags` turns fields into argparse flags (`--max-steps`, spelled from the field's name
unless a `Flag` says otherwise), whose `--help` shows each field's type and default;
`KEY=VALUE` assignments (`--set`) are read by the same readers (`assignments`), and `apply`
writes the values into a config with `dataclasses.replace`, so a flag and `--set` are one
override path.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Reader = Callable[[str], Any]


def type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def shown(value: Any) -> str:
    """A value as one types it on the command line (tuples as comma lists)."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def reader(hint: Any, name: str = "value") -> Reader | None:
    """A function reading a field of type `hint` from its text, raising ValueError with a one-
    line message; None for a type that has no text form (a mapping)."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            return None
        hint = args[0]
    origin = typing.get_origin(hint)
    if origin is tuple:
        element = typing.get_args(hint)[0]
        one = reader(element, name)
        if one is None:
            return None

        def read(text: str) -> Any:
            # An empty list reads as (): the config's own check says whether it may be empty.
            return tuple(one(v.strip()) for v in text.split(",") if v.strip())

    elif hint is bool:

        def read(text: str) -> Any:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"{name} takes true or false, got {text!r}")
            return text.lower() in ("true", "1")

    elif hint in (int, float, str):

        def read(text: str) -> Any:
            try:
                return hint(text)
            except ValueError:
                raise ValueError(f"{name} takes {hint.__name__}, got {text!r}") from None

    else:
        return None
    if not optional:
        return read
    return lambda text: None if text.lower() == "none" else read(text)


@dataclasses.dataclass(frozen=True)
class Field:
    """One settable field of a config dataclass."""

    scope: str
    name: str
    hint: Any
    default: Any
    read: Reader


def fields_of(config: Any, scope: str) -> dict[str, Field]:
    """The settable fields of a config dataclass (instance: its values are the defaults)."""
    hints = typing.get_type_hints(config if isinstance(config, type) else type(config))
    out = {}
    for f in dataclasses.fields(config):
        read = reader(hints[f.name], f.name)
        if read is None:
            continue
        if isinstance(config, type):
            default = f.default if f.default is not dataclasses.MISSING else None
        else:
            default = getattr(config, f.name)
        out[f.name] = Field(scope, f.name, hints[f.name], default, read)
    return out


@dataclasses.dataclass(frozen=True)
class Flag:
    """How a field's flag differs from the generated one: its spellings, help, metavar,
    choices, or a stricter reader (e.g. positive numbers; argparse type functions)."""

    flags: tuple[str, ...] = ()
    help: str = ""
    metavar: str | None = None
    choices: Sequence[str] | None = None
    read: Reader | None = None


def flag_names(field: Field, spec: Flag | None) -> tuple[str, ...]:
    return spec.flags if spec and spec.flags else ("--" + field.name.replace("_", "-"),)


def dest(field: Field) -> str:
    return f"{field.scope}.{field.name}"


def _argparse_type(field: Field, read: Reader) -> Reader:
    def parse(text: str) -> Any:
        try:
            return read(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def add_flags(
    group: Any,
    fields: Iterable[Field],
    specs: Mapping[str, Flag] | None = None,
    taken: set[str] | None = None,
) -> None:
    """One flag per field (skipping those whose spelling is in `taken`, e.g. a task field that
    shares its name with a sweep flag: `--set` still reaches it). A flag not given leaves no
    attribute (so "none" can be given explicitly)."""
    specs = specs or {}
    taken = set() if taken is None else taken
    for field in fields:
        spec = specs.get(field.name)
        names = flag_names(field, spec)
        if taken & set(names):
            continue
        taken.update(names)
        kind = type_name(field.hint)
        what = f"{spec.help}; " if spec and spec.help else ""
        group.add_argument(
            *names,
            dest=dest(field),
            type=_argparse_type(field, _stricter(field, spec)),
            default=argparse.SUPPRESS,
            choices=spec.choices if spec else None,
            metavar=spec.metavar
            if spec and spec.metavar
            else None
            if spec and spec.choices
            else _metavar(field),
            help=f"{what}{kind}, default {shown(field.default)}".replace("%", "%%"),
        )


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(hint)
    )


def _stricter(field: Field, spec: Flag | None) -> Reader:
    """The spec's reader where it has one (accepting "none" for an optional field)."""
    if spec is None or spec.read is None:
        return field.read
    read = spec.read
    if not _optional(field.hint):
        return read
    return lambda text: None if text.lower() == "none" else read(text)


_METAVARS = {int: "N", float: "X", str: "TEXT", bool: "BOOL"}


def _metavar(field: Field) -> str | None:
    """N, X, TEXT or BOOL by the field's type (N[,N...] for a tuple of them)."""
    hint = field.hint
    if _optional(hint):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        one = _METAVARS.get(typing.get_args(hint)[0], "VALUE")
        return f"{one}[,{one}...]"
    return _METAVARS.get(hint, "VALUE")


def given(args: argparse.Namespace, scope: str) -> dict[str, Any]:
    """{field: value} of the flags of `scope` on the command line."""
    prefix = f"{scope}."
    return {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix)}


def assignments(items: Iterable[str], *scopes: Mapping[str, Field]) -> dict[tuple[str, str], Any]:
    """`KEY=VALUE` items read by the first of `scopes` that has KEY: {(scope, key): value}.

    Raises:
      SystemExit: one line naming the item, for a missing `=`, an unknown key or a bad value.
    """
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        field = next((s[key] for s in scopes if key in s), None)
        if not sep or field is None:
            known = ", ".join(k for s in scopes for k in s)
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with KEY one of {known}")
        try:
            out[(field.scope, key)] = field.read(text)
        except (ValueError, TypeError):
            raise SystemExit(
                f"--set {item!r}: cannot read {text!r} as {type_name(field.hint)}"
            ) from None
    return out


def apply(config: Any, changes: Mapping[str, Any], what: str = "") -> Any:
    """`config` with `changes` (a config's own check refusing a value: one line)."""
    if not changes:
        return config
    try:
        return dataclasses.replace(config, **changes)
    except ValueError as e:
        set_text = " ".join(f"{k}={shown(v)}" for k, v in changes.items())
        raise SystemExit(f"error: {what or set_text}: {e}") from None
