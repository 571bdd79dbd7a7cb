"""How every command talks: one ``autosmime:`` prefix on stderr, plurals, JSON on stdout, progress.

    >>> from autosmime.cli._output import plural
    >>> plural(1, "key"), plural(2, "key"), plural(0, "entry", "entries")
    ('1 key', '2 keys', '0 entries')

Status, warnings and hints go to stderr, each line prefixed ``autosmime:``, so
stdout carries only what a command produces (a message, a certificate, a
listing or one JSON object) and a script can pipe it. The progress spinner is
drawn only when stderr is a terminal: piped or in tests, there is none.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any, BinaryIO, Literal, TypeVar

import click

from autosmime._words import plural

__all__ = ["PREFIX", "Progress", "binary_stream", "emit_json", "next_steps", "plural", "progress", "say", "warn"]

PREFIX = "autosmime: "
T = TypeVar("T")


def binary_stream(name: Literal["stdin", "stdout"]) -> BinaryIO:
    """The byte stream under ``sys.stdin``/``sys.stdout`` (click's own helper is deprecated since 8.5).

    Looked up at call time, so click's test runner, which swaps ``sys`` streams, is honoured.
    """
    text = sys.stdin if name == "stdin" else sys.stdout
    return text.buffer


def say(text: str) -> None:
    """Status on stderr: every line of ``text`` gets the one prefix."""
    for line in text.splitlines() or [""]:
        click.echo(PREFIX + line, err=True)


def warn(text: str) -> None:
    """A warning on stderr: the run goes on, the user should know."""
    say(f"warning: {text}")


def emit_json(doc: dict[str, Any]) -> None:
    """One JSON object on stdout (the keys of each command's object are listed in docs/cli.md)."""
    click.echo(json.dumps(doc, indent=2))


def next_steps(steps: list[str]) -> None:
    """certbot-style hints after a command that changed something: the commands worth running next."""
    if not steps:
        return
    say("Next steps:")
    for step in steps:
        say(f"  - {step}")


class Progress:
    """A rich spinner on ``stream`` naming the running step, or nothing at all when the stream is no terminal.

    ``paused`` wraps a callback that talks to the person (a prompt, the recovery
    code shown once) so the spinner never draws over it.
    """

    def __init__(self, text: str, stream: IO[str] | None = None, *, enabled: bool = True) -> None:
        self.text = text
        self._status: Any = None
        stream = stream if stream is not None else sys.stderr
        if enabled and _is_terminal(stream):
            from rich.console import Console

            self._status = Console(file=stream, force_terminal=True).status(text)

    @property
    def active(self) -> bool:
        return self._status is not None

    def __enter__(self) -> Progress:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()

    def update(self, text: str) -> None:
        self.text = text
        if self._status is not None:
            self._status.update(text)

    def step(self, text: str) -> None:
        """A flow's progress callback: names the step now running."""
        self.update(text + " ...")

    def paused(self, fn: Callable[..., T]) -> Callable[..., T]:
        def run(*args: Any, **kwargs: Any) -> T:
            if self._status is not None:
                self._status.stop()
            try:
                return fn(*args, **kwargs)
            finally:
                if self._status is not None:
                    self._status.start()
        return run


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


@contextlib.contextmanager
def progress(text: str, stream: IO[str] | None = None) -> Iterator[Progress]:
    """``with progress("backing up ..."):`` around anything that may take over a second."""
    with Progress(text, stream) as p:
        yield p
