"""How a setting is declared: once, on the dataclass field that holds it.

A run setting (``experiments.definition.config.RunConfig``) and a method's hyperparameter (each method's
settings class in ``experiments.definition.methods``) are dataclass fields made by ``setting(...)``: the
default, a help line, the bounds or choices, and who may set it (``recorded``: a study setting a
recorded configuration may carry; ``False``: where the run executes, from the command line or the
environment only, docs/security.md).  From that one declaration come

- the command-line option (``add_options``: flag, type, choices, help),
- the check of a value (``Declared.check``: one ``ConfigError`` line naming the option),
- the configuration file's schema (``schema``: a strict pydantic model of the same fields).

The field's type (its annotation) says which check applies: ``int`` a whole number in bounds,
``float`` a finite number in bounds, ``str`` with choices one of them, ``list[str]`` distinct names,
``bool`` a switch; ``X | None`` also allows None.
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A run setting is invalid; the message names the option, the value and what to do."""


@dataclass(frozen=True)
class Setting:
    """What a declaration says beyond its type and default."""

    help: str
    recorded: bool = True  # False: where it runs (out, data, device, ...): never taken from a handed-over file
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the bound ``low`` excluded
    choices: Callable[[], Sequence[str]] | None = None  # called when needed (registries fill late)
    heavy_choices: bool = False  # the choices live in a module that loads torch: checked, not listed by --help
    check_name: Callable[[str, str], None] | None = None  # each name of a list: raises ConfigError
    option: bool = True  # False: settable from the API and a config file only
    switch_off: str | None = None  # a bool option on by default: the flag that turns it off ("--no-progress")
    aliases: tuple[str, ...] = ()  # earlier flags still accepted ("--coreset-ratio")
    metavar: str | None = None


def setting(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field declaring one setting (a list default is copied per instance)."""
    meta = {"setting": Setting(help, **kw)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Declared:
    """One declared setting: its name (``prefix`` + field name), type, default and declaration."""

    name: str  # "seed", or "patchcore.k" for a method's hyperparameter
    kind: type  # int, float, str, bool, list, Path
    optional: bool  # None allowed
    default: Any
    decl: Setting

    @property
    def flag(self) -> str:
        return "--" + self.name.replace(".", "-").replace("_", "-")

    def fail(self, value: object, why: str) -> ConfigError:
        return ConfigError(f"{self.flag} {value!r}: {why}")

    def check(self, value: Any) -> None:
        """Raise ``ConfigError`` (one line naming the option) unless ``value`` is one this setting takes."""
        if value is None and self.optional:
            return
        d = self.decl
        if self.kind is bool:
            if not isinstance(value, bool):
                raise self.fail(value, "must be true or false")
        elif self.kind is int:
            low, high = d.low, d.high
            if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low) \
                    or (high is not None and value > high):
                bound = f"a whole number >= {int(low or 0)}" + (f" and <= {int(high)}" if high is not None else "")
                raise self.fail(value, f"must be {bound}")
        elif self.kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            low = -math.inf if d.low is None else d.low
            ok = ok and (value > low if d.low_open else value >= low) and (d.high is None or value <= d.high)
            if not ok:
                interval = f"{'(' if d.low_open else '['}{low:g}, {'inf)' if d.high is None else f'{d.high:g}]'}"
                raise self.fail(value, f"must be a finite number in {interval}")
        elif self.kind is list:
            if isinstance(value, str) or not isinstance(value, list) or not value:
                raise self.fail(value, "give one or more names")
            if len(set(map(str, value))) != len(value):
                raise self.fail(value, "a name is repeated")
            allowed = list(d.choices()) if d.choices else None
            for v in value:
                if allowed is not None and v not in allowed:
                    raise self.fail(v, f"choose from {', '.join(allowed)}")
                if d.check_name is not None:
                    d.check_name(v, self.flag)
        elif d.choices is not None:
            allowed = list(d.choices())
            if value not in allowed:
                raise self.fail(value, f"choose one of {', '.join(allowed)}")
        elif not isinstance(value, self.kind):
            raise self.fail(value, f"must be a {self.kind.__name__}")

    def add_option(self, parser: argparse.ArgumentParser) -> None:
        """This setting's option on ``parser``; an option not given stays None (the preset's value then)."""
        d = self.decl
        dest = self.name.replace(".", "__")
        if self.kind is bool:  # a switch: its flag turns the default over (--no-progress off, --official-maps on)
            parser.add_argument(d.switch_off or self.flag, dest=dest, action="store_const", const=not self.default,
                                default=None, help=d.help.replace("%", "%%"))
            return
        choices = list(d.choices()) if d.choices and not d.heavy_choices else None
        help_ = d.help + ("" if self.default is None or "(default" in d.help else f" (default: {self.default})")
        if choices is not None:
            help_ += f"; one of: {', '.join(choices)}"
        kw: dict[str, Any] = {"dest": dest, "default": None, "help": help_.replace("%", "%%"),
                              "metavar": d.metavar or self.name.rpartition(".")[2].upper()}
        if self.kind in (int, float):
            kw["type"] = self.kind
        if self.kind is list:
            kw["nargs"] = "+"
        if choices is not None:
            kw["choices"] = choices
        parser.add_argument(self.flag, *d.aliases, **kw)

    def given(self, args: argparse.Namespace) -> Any:
        """The value the command line gave (None: not given)."""
        return getattr(args, self.name.replace(".", "__"), None)


def _kind(annotation: Any) -> tuple[type, bool]:
    """(base type, None allowed) of a field annotation such as ``int | None`` or ``list[str]``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        base, _ = _kind(inner[0])
        return base, True
    origin = typing.get_origin(annotation)
    return (origin or annotation), False


def declared(cls: type, prefix: str = "") -> list[Declared]:
    """Every setting declared on the dataclass ``cls``, in field order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        decl = f.metadata.get("setting")
        if decl is None:
            continue
        kind, optional = _kind(hints[f.name])
        out.append(Declared(prefix + f.name, kind, optional, _default(f), decl))
    return out


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None  # type: ignore[misc]


def schema_type(d: Declared) -> Any:
    """The JSON type a configuration file holds for ``d`` (paths as strings)."""
    base: Any = {list: list[str], Path: str}.get(d.kind, d.kind)
    return base | None if d.optional else base
