"""Option handling shared by every command: global options anywhere, ``~`` in paths, ``-`` for stdout.

    >>> import click
    >>> @click.group()
    ... @click.option("--home")
    ... @click.option("--debug", is_flag=True)
    ... def root(home, debug): pass
    >>> @root.command()
    ... @click.option("--out", type=click.Path())
    ... @click.option("--subject")
    ... def send(out, subject): pass
    >>> normalise_args(root, ["send", "--subject", "--home", "--home", "h", "--debug"])
    ['--home', 'h', '--debug', 'send', '--subject', '--home']

click parses the root group's options only before the subcommand, and does
not expand ``~`` in ``--out=~/x`` (no shell does either: it is not the start
of a word). :func:`normalise_args` runs once on the command line before click
sees it, so every command, including ones added later, gets both: the global
options (``--home``, ``--debug``) found after the subcommand move to the
front, ``--json`` given before the subcommand moves behind it, and the value
of every option whose type is a :class:`click.Path` has ``~`` expanded. It
knows which options take a value from the commands themselves, so a global
option's name given as another option's value (``--subject --home``) or
after ``--`` is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

__all__ = ["GLOBAL_OPTIONS", "STDOUT", "OutFile", "given_before_command", "is_stdout", "normalise_args"]

#: root-group options accepted after the subcommand too: name -> takes a value
GLOBAL_OPTIONS = {"--home": True, "--debug": False}
#: per-command options also accepted before the subcommand (moved behind it)
_COMMAND_FIRST = ("--json",)
STDOUT = "-"


class OutFile(click.Path):
    """A file to write, where ``-`` means standard output (test with :func:`is_stdout`)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dir_okay", False)
        kwargs.setdefault("path_type", Path)
        super().__init__(allow_dash=True, **kwargs)


def is_stdout(path: Path | str | None) -> bool:
    """True for the ``-`` of an :class:`OutFile` option."""
    return path is not None and str(path) == STDOUT


def _option(command: click.Command, name: str) -> click.Option | None:
    for param in command.params:
        if isinstance(param, click.Option) and (name in param.opts or name in param.secondary_opts):
            return param
    return None


def _takes(option: click.Option) -> int:
    """How many following words the option consumes when given without ``=``."""
    if option.is_flag or option.count:
        return 0
    return max(option.nargs, 1)


def _expand(option: click.Option | None, value: str) -> str:
    if option is not None and isinstance(option.type, click.Path) and value.startswith("~"):
        return os.path.expanduser(value)
    return value


def normalise_args(root: click.Group, args: Sequence[str]) -> list[str]:
    """The command line rearranged as click expects it (see the module docstring); unknown words pass through."""
    args = list(args)
    front: list[str] = []
    moved: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] not in ("-", "--"):
        name, eq, value = args[i].partition("=")
        opt = _option(root, name)
        if opt is None and name in _COMMAND_FIRST:
            moved.append(args[i])
            i += 1
            continue
        front.append(name + eq + _expand(opt, value) if eq else args[i])
        i += 1
        if opt is not None and not eq:
            take = _takes(opt)
            front.extend(_expand(opt, v) for v in args[i:i + take])
            i += take
    if i >= len(args) or args[i] == "--":
        return front + moved + args[i:]
    ctx = click.Context(root, resilient_parsing=True)
    command: click.Command = root
    hoisted: list[str] = []
    rest: list[str] = []
    while i < len(args):
        word = args[i]
        if word == "--":
            break
        if isinstance(command, click.Group) and not word.startswith("-"):
            sub = command.get_command(ctx, word)
            if sub is not None:
                command = sub
                rest.append(word)
                i += 1
                continue
        if word.startswith("-") and word != "-":
            name, eq, value = word.partition("=")
            opt = _option(command, name)
            if opt is None and name in GLOBAL_OPTIONS:
                take = 1 if GLOBAL_OPTIONS[name] and not eq else 0
                hoisted.extend(args[i:i + 1 + take])
                i += 1 + take
                continue
            rest.append(name + eq + _expand(opt, value) if eq else word)
            i += 1
            if opt is not None and not eq:
                take = _takes(opt)
                rest.extend(_expand(opt, v) for v in args[i:i + take])
                i += take
            continue
        rest.append(word)
        i += 1
    return front + hoisted + rest + moved + args[i:]


def given_before_command(root: click.Group, args: Sequence[str], flag: str) -> bool:
    """Whether the root's ``flag`` is among the options before the command (where normalise_args put it)."""
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] not in ("-", "--"):
        name, eq, _ = args[i].partition("=")
        if name == flag:
            return True
        opt = _option(root, name)
        i += 1 + (_takes(opt) if opt is not None and not eq else 0)
    return False
