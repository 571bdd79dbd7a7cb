"""sign, verify, encrypt, decrypt."""

import click


def register(group: click.Group) -> None:
    pass
