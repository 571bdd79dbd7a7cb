"""docs/cli.md lists the JSON of every command that has --json."""

from __future__ import annotations

from pathlib import Path

import click

from autosmime.cli import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        if command is not None:
            yield (*path, name), command


def test_every_json_option_is_documented():
    text = DOC.read_text()
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    missing = [" ".join(path) for path, command in _commands(cli)
               if any("--json" in getattr(p, "opts", ()) for p in command.params)
               and not any(f"`{' '.join(path)}" in h for h in headings)]
    assert not missing, f"add a section to docs/cli.md for: {missing}"
