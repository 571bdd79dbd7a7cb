"""``autosmime account``: connect autosmime to the user's mailbox.

    $ autosmime --home ~/.autosmime account add --email me@example.org \\
          --imap imap.example.org:143 --smtp smtp.example.org:587 --password-file ~/.mailpw
    $ autosmime account add --email me@example.org --imap imap.example.org --smtp smtp.example.org \\
          --security imap=tls,smtp=starttls          # IMAP on 993 with TLS, submission on 587 with STARTTLS
    $ autosmime account show --json

``add`` logs in to IMAP first and saves nothing if that fails. The password
goes into the OS keyring when one exists; otherwise only the path of the
password file is remembered.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from autosmime.cli import agent_for, home_dir
from autosmime.errors import AccountError, UsageError

# Option help lives here, so `autosmime --help` loads no mailbox code.
SECURITY_HELP = ("One mode for both servers (starttls, tls or plain) or one each, as in imap=tls,smtp=starttls "
                 "(IMAP on 993 with TLS, submission on 587 with STARTTLS). starttls and tls verify the server "
                 "certificate; plain is allowed only on loopback.")
TIMEOUT_HELP = ("Give up on a server that does not connect or answer within this time "
                "[default: 10] (AUTOSMIME_TIMEOUT overrides it).")

_DEFAULT_PORTS = {"imap": {"starttls": 143, "plain": 143, "tls": 993},
                  "smtp": {"starttls": 587, "plain": 587, "tls": 465}}


def parse_hostport(value: str, kind: str, security: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or bare ``host`` (the usual port for ``security``)."""
    from autosmime._hostport import parse_hostport as parse

    try:
        return parse(value, default_port=_DEFAULT_PORTS[kind][security])
    except ValueError as e:
        raise UsageError(f"--{kind}: {e}") from None


def security_option(value: str) -> tuple[str, str]:
    """``--security``'s ``(imap, smtp)`` modes; UsageError (exit 2) for anything else."""
    from autosmime.mailbox.account import parse_security

    try:
        return parse_security(value)
    except AccountError as e:
        raise UsageError(f"--security: {e}") from None


def register(group: click.Group) -> None:
    group.add_command(account)


@click.group()
def account() -> None:
    """Configure the mailbox autosmime uses."""


@account.command("add")
@click.option("--email", required=True, help="Your email address.")
@click.option("--imap", "imap", required=True, metavar="HOST:PORT", help="IMAP server.")
@click.option("--smtp", "smtp", required=True, metavar="HOST:PORT", help="SMTP submission server.")
@click.option("--username", help="Login name (default: the email address).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File whose first line is the password (else asked at the terminal, no echo, and kept in the OS "
                   "keyring, or in a 0600 file in the home where there is none).")
@click.option("--security", default="starttls", show_default=True, metavar="MODE|imap=MODE,smtp=MODE",
              help=SECURITY_HELP)
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="PEM CA certificates to verify the servers with instead of the system roots.")
@click.option("--timeout", type=float, default=None, metavar="SECONDS", help=TIMEOUT_HELP)
@click.pass_context
def add(ctx: click.Context, email: str, imap: str, smtp: str, username: str | None, password_file: Path | None,
        security: str, ca_file: Path | None, timeout: float | None) -> None:
    """Check the login and save the account."""
    from autosmime.agent.account import add_account
    from autosmime.mailbox.account import DEFAULT_TIMEOUT, Account, format_security
    from autosmime.mailbox.credentials import read_password_file

    agent = agent_for(ctx)
    imap_mode, smtp_mode = security_option(security)
    imap_host, imap_port = parse_hostport(imap, "imap", imap_mode)
    smtp_host, smtp_port = parse_hostport(smtp, "smtp", smtp_mode)
    if password_file is not None:
        password_file = password_file.expanduser().absolute()
        password = read_password_file(password_file)
    elif not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password on: pass --password-file")
    else:
        password = click.prompt(f"Password for {username or email}", hide_input=True, err=True)
    acct = Account(email=email, imap_host=imap_host, imap_port=imap_port, smtp_host=smtp_host,
                   smtp_port=smtp_port, username=username or email, security=format_security(imap_mode, smtp_mode),
                   ca_file=str(ca_file.expanduser().absolute()) if ca_file else None,
                   timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
    saved = add_account(agent, acct, password, password_file=password_file)
    where = {"keyring": "the OS keyring", "password-file": f"{saved.password_file} (path only)",
             "file": f"{saved.password_file} (0600; there is no OS keyring)"}[saved.password_source]
    click.echo(f"account {acct.email} saved in {agent.home}; IMAP and SMTP login ok; password from {where}")


@account.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """Print the configured account (never the password)."""
    from autosmime.mailbox.account import load_account

    acct = load_account(home_dir(ctx))
    data = dataclasses.asdict(acct)
    data["password_source"] = "file" if acct.password_file else "keyring"
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        click.echo(f"{key.replace('_', ' '):<{width}}  {'-' if value is None else value}")
