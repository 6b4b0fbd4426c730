"""Command-line options generated from settings dataclasses: each option, default and help written once.

Like img2dataset's ``download()`` signature being its CLI, a command's options are the fields of the
settings dataclasses it runs with: :func:`settings_options` gives a typer command one option per
field, and :func:`from_flat` builds the dataclass back from the parsed values. A field's metadata
carries what the command line needs beyond its type and default:

- ``help``: the option's help text;
- ``min``: the smallest allowed value (``--x must be at least 1`` / ``must not be negative``);
- ``choices``: the closed set of allowed values, checked when the command line is parsed, so a wrong
  ``--classifier`` fails in one line before any search, download or model load; an entry ending in
  ``:N`` also admits that prefix with a number (``cuda:N`` admits ``cuda:1``);
- ``cli``: ``False`` keeps an internal field off the command line;
- ``panel``: the ``--help`` panel (default: the section's name).

Types: ``bool`` is a flag (``--x/--no-x`` when it defaults to True), ``X | None`` an optional value,
``tuple[X, ...]`` a repeatable option (the dataclass gets a tuple back: settings stay hashable), a
fixed ``tuple[X, Y]`` an option taking that many values. Parameters the command declares itself (an
argument, an option with its own spelling) are left as they are and take the field's place.

This module imports only typer: a command's ``--help`` must not load Beam, torch or pandas.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import typer

from videonet.errors import UserError

Section = Union[type, tuple[str, type]]  # a settings dataclass, or (panel name, dataclass)


def flag(name: str) -> str:
    """The option spelling of a field name: ``clip_batch`` -> ``--clip-batch``."""
    return "--" + name.replace("_", "-")


def _named(sections: Iterable[Section]) -> Iterator[tuple[str | None, type]]:
    for section in sections:
        yield section if isinstance(section, tuple) else (None, section)


def option_fields(sections: Iterable[Section]) -> Iterator[tuple[str | None, dataclasses.Field, Any]]:
    """(section name, field, resolved type) of every field of ``sections`` that is a command-line option."""
    for name, cls in _named(sections):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli", True):
                yield name, f, hints[f.name]


def allowed(value: Any, choices: Sequence[Any]) -> bool:
    """Whether ``value`` is one of ``choices`` (an entry ``prefix:N`` admits ``prefix:<digits>``)."""
    if value in choices:
        return True
    return isinstance(value, str) and any(
        isinstance(c, str) and c.endswith(":N") and re.fullmatch(re.escape(c[:-1]) + r"\d+", value) for c in choices)


def check_value(f: dataclasses.Field, value: Any) -> None:
    """A one-line :class:`UserError` when ``value`` breaks the field's declared ``min`` or ``choices``."""
    values = value if isinstance(value, (list, tuple)) else [value]
    choices, low = f.metadata.get("choices"), f.metadata.get("min")
    for v in values:
        if v is None:
            continue
        if choices is not None and not allowed(v, choices):
            raise UserError(f"{flag(f.name)} {v!r}: expected {', '.join(map(str, choices))}")
        if low is not None and v < low:
            raise UserError(f"{flag(f.name)} must be at least {low}" if low else f"{flag(f.name)} must not be negative")


def check_fields(settings: Any) -> None:
    """:func:`check_value` on every field of a settings dataclass instance (for settings built in code)."""
    for f in dataclasses.fields(settings):
        check_value(f, getattr(settings, f.name))


def from_flat(cls: type, flat: dict[str, Any], **extra: Any) -> Any:
    """``cls`` built from the values in ``flat`` that name its fields (popped from ``flat``); a
    repeatable option's list becomes the tuple the field declares."""
    hints = typing.get_type_hints(cls)
    own = {}
    for f in dataclasses.fields(cls):
        if f.name in flat:
            value = flat.pop(f.name)
            own[f.name] = tuple(value) if isinstance(value, list) and _origin(hints[f.name]) is tuple else value
    return cls(**own, **extra)


def _origin(hint: Any) -> Any:
    return typing.get_origin(hint)


def _command_line_type(hint: Any) -> Any:
    """The annotation typer understands for a field's type: ``X | None`` as ``Optional[X]``,
    ``tuple[X, ...]`` as ``list[X]``."""
    if _origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return Optional[_command_line_type(args[0])]
        return hint
    if _origin(hint) is tuple and typing.get_args(hint)[-1:] == (Ellipsis,):
        return list[typing.get_args(hint)[0]]
    return hint


def _validator(f: dataclasses.Field) -> Callable[[Any], Any] | None:
    """A typer callback that checks the parsed value against the field's ``min`` and ``choices``."""
    if f.metadata.get("choices") is None and f.metadata.get("min") is None:
        return None

    def check(value):
        check_value(f, value)
        return value

    return check


def _default(f: dataclasses.Field, annotation: Any) -> Any:
    """The field's default as typer takes it: a list for a repeatable option, ``...`` when required."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ...
    return list(value) if _origin(annotation) is list and value is not None else value


def make_option(f: dataclasses.Field, hint: Any, section: str | None = None) -> tuple[Any, Any]:
    """(typer option, annotation) of one settings field."""
    name = flag(f.name)
    decls = [f"{name}/--no-{name[2:]}"] if hint is bool and f.default is True else [name]
    choices = f.metadata.get("choices")
    panel = f.metadata.get("panel", section.capitalize() if section else None)
    annotation = _command_line_type(hint)
    option = typer.Option(_default(f, annotation), *decls, help=f.metadata.get("help"), callback=_validator(f),
                          metavar="[" + "|".join(map(str, choices)) + "]" if choices else None,
                          rich_help_panel=panel)
    return option, annotation


def settings_options(sections: Sequence[Section] | Callable[[], Sequence[Section]]):
    """Decorator: give ``command(..., **settings)`` one typer option per field of ``sections``.

    The command receives the values as keyword arguments (build the settings with
    :func:`from_flat`); ``--help`` groups them by section. ``sections`` may be a function returning
    them, called when the decorator runs.
    """

    def decorate(command):
        own = list(inspect.signature(command).parameters.values())
        kwargs = own.pop()
        assert kwargs.kind is inspect.Parameter.VAR_KEYWORD, "the command takes the settings as **kwargs"
        declared = {p.name for p in own}
        params, annotations = [], dict(typing.get_type_hints(command))
        for section, f, hint in option_fields(sections() if callable(sections) else sections):
            if f.name in declared:  # the command spells this one itself (an argument, say)
                continue
            option, annotation = make_option(f, hint, section)
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                            annotation=annotation))
            annotations[f.name] = annotation
        command.__signature__ = inspect.Signature(own + params)  # what typer reads
        command.__annotations__ = annotations
        return command

    return decorate

