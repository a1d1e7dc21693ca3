"""Parsers built from the option table, and the parsed values as the recipe's settings (for `from_preset`)."""

from __future__ import annotations

import argparse
from typing import Any

from lth_ray.core.options.option import NONE, SCOPES, SETTINGS, Option, names
from lth_ray.core.options.recipe import RECIPE
from lth_ray.core.spec.config import ConfigError, parse_numbers


def in_scope(options: tuple[Option, ...], scope: str) -> tuple[Option, ...]:
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is unknown; allowed: {', '.join(SCOPES)}")
    return tuple(o for o in options if scope in o.scopes)


def help_of(option: Option, scope: str, default: Any = None, choices: tuple | None = None) -> str:
    """The option's help as --help prints it: what it means, its choices in a list, a grid axis, the default."""
    text = option.help
    allowed = option.allowed() if choices is None else choices
    axis = " (an axis of the grid)" if option.grid and scope == "sweep" else ""
    if allowed and option.is_list(scope):
        text += f"; a comma list of {', '.join(allowed)}{axis}"
    elif allowed and option.metavar:  # choices its metavar does not list (--arch's)
        text += f"; one of {', '.join(allowed)}{axis}"
    elif axis:
        text += f"; a comma list{axis}"
    if option.is_flag:  # on where a command's default turns it on (store_true True, store_false False)
        shown = "on" if default is not None and default != (option.action == "store_false") else "off"
    elif default is not None:
        shown = default
    else:
        shown = option.shown if option.shown is not None else option.default
    return f"{text} (default: {NONE if shown is None else shown})"


def add_options(
    parser: argparse.ArgumentParser,
    options: tuple[Option, ...],
    scope: str,
    defaults: dict[str, Any] | None = None,
    choices: dict[str, tuple] | None = None,
) -> None:
    """Add `options` of `scope` to `parser`, in groups, each with its help, choices and default shown.

    `defaults` and `choices` (by destination) narrow the table for one command: a sweep module's archs and
    data sets, for instance. Choices are checked after parsing (`check_choices`), for lists item by item; the
    registries' choices are read here, when the parser is built."""
    defaults, choices = defaults or {}, choices or {}
    groups: dict[str, Any] = {}
    for o in in_scope(options, scope):
        if o.group not in groups:
            groups[o.group] = parser.add_argument_group(o.group)
        g = groups[o.group]
        allowed = choices.get(o.dest, o.allowed())
        default = defaults.get(o.dest, o.default)
        help_text = help_of(o, scope, defaults.get(o.dest), choices.get(o.dest, allowed))
        if o.is_flag:  # off: False for store_true, True for store_false (TrajectoryConfig's defaults)
            on = {"default": defaults[o.dest]} if o.dest in defaults else {}  # a command's default (a sweep's)
            g.add_argument(o.flag, dest=o.dest, action=o.action, help=help_text, **on)
        else:
            metavar = o.metavar or "{" + ",".join(allowed) + "}"
            if o.grid and scope == "sweep":
                metavar = f"{o.metavar or o.dest.upper()}[,...]"
            g.add_argument(
                o.flag, dest=o.dest, type=o.text_type(scope), default=default, metavar=metavar, help=help_text
            )
        for alias in o.aliases:
            if alias.const is not None:
                g.add_argument(
                    alias.flag,
                    dest=o.dest,
                    action="store_const",
                    const=alias.const,
                    default=argparse.SUPPRESS,
                    help=argparse.SUPPRESS,
                )
            else:
                g.add_argument(
                    alias.flag, dest=o.dest, type=o.text_type(scope), default=argparse.SUPPRESS, help=argparse.SUPPRESS
                )


def option(dest: str, options: tuple[Option, ...] = RECIPE) -> Option:
    for o in options:
        if o.dest == dest:
            return o
    raise KeyError(dest)


def value_of(args: argparse.Namespace, o: Option, scope: str) -> Any:
    """The option's value as the recipe takes it: None when not given, a list for a list or a sweep's axis."""
    text = getattr(args, o.dest)
    if text is None or o.is_flag:
        return text
    if o.grid and scope == "sweep":
        if o.type is str or o.parse is not None:
            values = [t.strip() for t in str(text).split(",") if t.strip()]  # (`none` is a value here: --augment)
            if not values:
                raise ConfigError(f"{o.flag}={text!r} is empty; give at least one value")
            return values if o.parse is None else [o.parse(v, o.flag) for v in values]
        return parse_numbers(text, o.flag, o.type)
    if o.parse is not None:
        return o.parse(text, o.flag)
    if o.listed:
        return names(text, o.flag)
    return text


def check_choices(
    args: argparse.Namespace, options: tuple[Option, ...], scope: str, choices: dict[str, tuple] | None = None
) -> None:
    """Every given value is one of its option's choices, or one `error:` line naming it and the allowed ones.
    A command's narrowed choices (`choices`, by destination) are "not allowed here" rather than unknown."""
    choices = choices or {}
    for o in in_scope(options, scope):
        allowed = choices.get(o.dest, o.allowed())
        text = getattr(args, o.dest, None)
        if not allowed or text is None:
            continue
        values = [t.strip() for t in str(text).split(",") if t.strip()] if o.is_list(scope) else [text]
        for value in values:
            if value not in allowed:
                named = f"{o.flag}: {value!r}" if o.is_list(scope) else f"{o.flag}={value!r}"
                why = "is not allowed here" if o.dest in choices else "is unknown"
                raise ConfigError(f"{named} {why}; allowed: {', '.join(allowed)}")


def recipe_settings(args: argparse.Namespace, scope: str, options: tuple[Option, ...] = RECIPE) -> dict:
    """The recipe's settings that the command line gives one value each, by field name, for `from_preset`
    (None: not given). In the sweep the grid axes are not among them (`grid_axes`)."""
    return {
        o.dest: value_of(args, o, scope)
        for o in in_scope(options, scope)
        if o.dest in SETTINGS and not (o.grid and scope == "sweep")
    }


def grid_axes(args: argparse.Namespace, options: tuple[Option, ...] = RECIPE) -> dict[str, list]:
    """The sweep's grid axes by field name, each a list; [None] where the option is not given (the preset's)."""
    return {o.dest: value_of(args, o, "sweep") or [None] for o in in_scope(options, "sweep") if o.grid}
