"""``autosmime devstack up|down``: the embedded loopback stack (mail with DKIM, DNS zone, CA).

    $ eval "$(autosmime devstack up --dir /tmp/stack --users alice,bob)"
    $ autosmime --home /tmp/alice account add --email alice@$DOMAIN --imap $IMAP --smtp $SMTP \\
          --security $SECURITY --ca-file $MAIL_CA_FILE --password-file $PASSWORDS_DIR/alice@$DOMAIN
    $ autosmime --home /tmp/alice enroll --ca $CA_URL
    $ autosmime devstack down --dir /tmp/stack

``up`` prints shell assignments (values quoted for POSIX shells) and returns
while the servers keep running; running it again on the same DIR is an error.
``down`` stops every process ``up`` started.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from autosmime.errors import UsageError


def register(group: click.Group) -> None:
    group.add_command(devstack)


@click.group()
def devstack() -> None:
    """Run the embedded loopback stack for trying autosmime out and for tests."""


@devstack.command("up")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the stack keeps everything (created; must be empty).")
@click.option("--users", default="alice,bob", show_default=True,
              help="Comma-separated user names; addresses are NAME@DOMAIN.")
def up_cmd(directory: Path, users: str) -> None:
    """Start mail, DNS zone and CA on loopback; print KEY=VALUE lines and return."""
    from autosmime.devstack.stack import up

    names = [u.strip() for u in users.split(",") if u.strip()]
    if not names:
        raise UsageError("--users: give at least one name")
    env = up(directory, names)
    for key, value in env.items():
        click.echo(f"{key}={shlex.quote(value)}")


@devstack.command("down")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
def down_cmd(directory: Path) -> None:
    """Stop everything `devstack up` started in DIR."""
    from autosmime.devstack.stack import down

    down(directory)
