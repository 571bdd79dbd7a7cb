"""Placeholder: commands are registered here by the module's owner."""

import click


def register(group: click.Group) -> None:
    pass
