"""``autosmime setup ADDRESS``: one command from nothing to a device that signs, encrypts and is backed up.

    $ autosmime --home ~/.autosmime setup me@gmail.com --ca https://ca.example/acme/directory
    $ autosmime --home /new/device setup me@gmail.com --recovery-code-file ~/code.txt
    $ eval "$(autosmime devstack up --dir /tmp/stack)"
    $ autosmime --home /tmp/alice setup alice@$DOMAIN --imap $IMAP --smtp $SMTP --security $SECURITY \\
          --ca-file $MAIL_CA_FILE --ca $CA_URL --directory $DIRECTORY_URL \\
          --password-file $PASSWORDS_DIR/alice@$DOMAIN --recovery-code-out /tmp/alice-code.txt

The flow is :func:`autosmime.agent.setup.setup`; this module parses, asks at the
terminal (password with no echo, the recovery code when a backup exists), shows
progress, and prints: the summary and the "next steps" on stderr, the JSON
(``--json``) or the recovery code (``--recovery-code-out -``) alone on stdout.
Exit codes: 0 set up (or already set up), 1 failure, 2 usage, 3 no backup to
restore with the given recovery code, 4 a recovery code is needed (or a join).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from autosmime.cli import _show_new_code, home_dir
from autosmime.cli._output import Progress
from autosmime.errors import UsageError

if TYPE_CHECKING:
    from autosmime.agent.setup import SetupOutcome

STDOUT = "-"


def register(group: click.Group) -> None:
    group.add_command(setup_cmd)


def _hostport(value: str | None, kind: str, security: str | None) -> tuple[str, int] | None:
    """``--imap``/``--smtp`` as (host, port); a bare host gets the usual port of its mode."""
    if value is None:
        return None
    from autosmime.cli.account import parse_hostport, security_option

    imap_mode, smtp_mode = security_option(security) if security else ("", "")
    mode = imap_mode if kind == "imap" else smtp_mode
    if not mode:  # no --security: TLS's port for a bare host (RFC 8314), the mode then follows the port
        mode = "tls" if kind == "imap" else "starttls"
    return parse_hostport(value, kind, mode)


def _read_code_file(path: Path) -> str:
    try:
        text = path.expanduser().read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the recovery code file {path}: {getattr(e, 'strerror', None) or e}") from None
    if not text:
        raise UsageError(f"the recovery code file {path} is empty")
    return text


def _ask_password(prompt: str) -> str:
    return str(click.prompt(prompt, hide_input=True, err=True))


def _ask_code() -> str | None:
    click.echo("autosmime: this account already has a key backup in your mailbox.", err=True)
    text = click.prompt("Recovery code (or press Enter to get it from one of your other devices instead)",
                        hide_input=True, default="", show_default=False, err=True)
    return str(text).strip() or None


def _describe(outcome: SetupOutcome) -> list[str]:
    from autosmime.agent.outcomes import BackupState
    from autosmime.agent.setup import KeysFrom, Publication
    from autosmime.mailbox.credentials import HOME_PASSWORD_FILE

    where = {"keyring": "the OS keyring", "file": f"{outcome.home / HOME_PASSWORD_FILE} (0600)",
             "password-file": "your password file (its path is remembered)"}[outcome.password_store]
    source = {"given": "as given", "saved": "as saved before"}.get(outcome.settings_source,
                                                                      f"found by {outcome.settings_source} discovery")
    lines = [f"mail: IMAP {outcome.imap}, SMTP {outcome.smtp}, security {outcome.security} ({source}); "
             f"login ok; password in {where}"]
    cert = outcome.certificate
    if cert is not None:
        how = {KeysFrom.HELD: "held", KeysFrom.RESTORED: "restored from your backup",
               KeysFrom.ENROLLED: "new"}[outcome.keys]
        lines.append(f"certificate ({how}): SHA-256 {cert.sha256}, valid until {cert.not_after[:10]}, "
                     f"issued by {cert.issuer}")
    if outcome.restore is not None:
        r = outcome.restore
        lines.append(f"restored backup {r.seq} of {r.created}: {r.keys} key{'s' * (r.keys != 1)} "
                     f"({r.added} new on this device)")
    backup = outcome.backup
    if backup is None:
        lines.append(f"key backup: stored before (last {outcome.backup_last_ok or 'by another device'})")
    elif backup.state is BackupState.STORED:
        merged = f", {backup.merged} taken in from your other devices" if backup.merged else ""
        lines.append(f"key backup {backup.seq} stored in your mailbox ({backup.keys} key{'s' * (backup.keys != 1)}"
                     f"{merged})")
    elif backup.state is BackupState.PENDING:
        lines.append(f"key backup pending (will retry): {backup.reason}")
    publication = {
        Publication.PUBLISHED: f"published in the key directory {outcome.directory}",
        Publication.HELD: f"published before in the key directory {outcome.directory}",
        Publication.NO_DIRECTORY: "not published (no key directory given or known)",
    }[outcome.publication]
    if outcome.publication is Publication.NO_DIRECTORY and outcome.keys is KeysFrom.RESTORED:
        publication = "not checked (no key directory given or known on this device)"
    lines.append(f"directory: {publication}")
    if outcome.code_file is not None:
        lines.append(f"recovery code written to {outcome.code_file}; keep it offline")
    if outcome.code_unseen:
        lines.append("warning: your recovery code was never shown nor written out: run "
                     "`autosmime recovery-code show` and keep it offline")
    return lines


def _next_steps(ctx: click.Context, outcome: SetupOutcome, home_given: bool) -> list[str]:
    """Commands worth running next (certbot-style), only those this autosmime has."""
    prefix = f"autosmime --home {outcome.home}" if home_given else "autosmime"
    root = ctx.find_root().command
    have = set(root.list_commands(ctx)) if isinstance(root, click.Group) else set()
    steps = [
        ("send", f"{prefix} send --to SOMEONE --subject Hello < body.txt   # signed, encrypted when it can be"),
        ("inbox", f"{prefix} inbox                                          # read, decrypt and verify"),
        ("status", f"{prefix} status                                         # certificate, backup, publication"),
        ("watch", f"{prefix} watch        # keeps it all running: renewals, backups, device joins (systemd unit)"),
        ("lookup", f"{prefix} lookup SOMEONE@EXAMPLE.ORG                      # find a recipient's certificate"),
    ]
    out = [line for name, line in steps if name in have]
    out.append(f"on another device: autosmime setup {outcome.address} --invite CODE "
               "(CODE from `autosmime invite` here), or with your recovery code")
    return out


def _as_json(outcome: SetupOutcome, code: str | None) -> dict[str, Any]:
    cert = outcome.certificate
    backup = outcome.backup
    restore = outcome.restore
    data: dict[str, Any] = {
        "address": outcome.address,
        "home": str(outcome.home),
        "changed": outcome.changed,
        "account": {"saved_now": outcome.account_saved, "settings_source": outcome.settings_source,
                    "imap": outcome.imap, "smtp": outcome.smtp, "security": outcome.security,
                    "password_store": outcome.password_store},
        "keys": {"from": outcome.keys.value,
                 "certificate": None if cert is None else {"sha256": cert.sha256, "not_after": cert.not_after,
                                                           "issuer": cert.issuer}},
        "restore": None if restore is None else {"seq": restore.seq, "created": restore.created,
                                                 "keys": restore.keys, "added": restore.added,
                                                 "skipped": restore.skipped},
        "backup": None if backup is None else {"state": backup.state.value, "seq": backup.seq, "keys": backup.keys,
                                               "merged": backup.merged, "reason": backup.reason},
        "backup_last_ok": outcome.backup_last_ok,
        "publication": {"state": outcome.publication.value, "directory": outcome.directory,
                        "sha256": outcome.published_sha256},
        "recovery_code": {"shown": outcome.code_shown,
                          "file": None if outcome.code_file is None else str(outcome.code_file),
                          "unseen": outcome.code_unseen},
        "notes": list(outcome.notes),
    }
    if code is not None:
        data["recovery_code"]["code"] = code
    return data


@click.command("setup", epilog="Exit codes: 0 set up (or already set up), 1 failure, 2 usage, 3 no key backup to "
                               "restore with the given recovery code or invitation, 4 a recovery code is needed (or "
                               "an invitation from another device: autosmime invite, there).")
@click.argument("address")
@click.option("--imap", metavar="HOST:PORT", help="IMAP server (default: discovered from the address).")
@click.option("--smtp", metavar="HOST:PORT", help="SMTP submission server (default: discovered from the address).")
@click.option("--security", metavar="MODE|imap=MODE,smtp=MODE",
              help="Default: discovered, else by port (993 and 465 TLS, others STARTTLS). "
                   "One mode for both servers (starttls, tls or plain) or one each, as in imap=tls,smtp=starttls.")
@click.option("--username", help="Login name (default: the discovered one, else the address).")
@click.option("--ca-file", metavar="PEM", type=click.Path(dir_okay=False, path_type=Path),
              help="CA certificates to verify the mail servers' TLS with instead of the system roots.")
@click.option("--ca", "ca_url", metavar="URL",
              help="The certificate authority's ACME directory, to enrol at when the mailbox has no key backup.")
@click.option("--ca-trust", metavar="PEM", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="CA certificates to trust for the certificate authority's HTTPS (a private CA).")
@click.option("--directory", metavar="URL", envvar="AUTOSMIME_DIRECTORY",
              help="The key directory to publish the certificate in (skipped, with a note, if none).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File whose first line is the mailbox password (else asked at the terminal, no echo).")
@click.option("--recovery-code-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The recovery code, to restore an existing key backup (else asked at the terminal).")
@click.option("--invite", "invite_code", metavar="CODE",
              help="When the mailbox has a key backup: the invitation code `autosmime invite` printed on your other "
                   "device; that device hands this one the keys by itself (while `autosmime watch` runs there).")
@click.option("--join-timeout", type=click.FloatRange(min=1), default=600, show_default=True, metavar="SECONDS",
              help="How long to wait for your other device when joining.")
@click.option("--recovery-code-out", metavar="FILE",
              help="Write the recovery code to FILE (0600); '-' prints it alone on standard output.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on standard output.")
@click.pass_context
def setup_cmd(ctx: click.Context, address: str, imap: str | None, smtp: str | None, security: str | None,
              username: str | None, ca_file: Path | None, ca_url: str | None, ca_trust: Path | None,
              directory: str | None, password_file: Path | None, recovery_code_file: Path | None,
              invite_code: str | None, join_timeout: float, recovery_code_out: str | None, as_json: bool) -> None:
    """Set up this device for ADDRESS: mail settings, login, keys (restored from your mailbox's backup, or a new
    certificate), backup, publication. Running it again changes nothing; a run that stopped resumes."""
    from autosmime.agent.setup import Prompts, ServerGiven, setup
    from autosmime.cli.join import ask_c2, invitation_option, show_c1

    if invite_code is not None and recovery_code_file is not None:
        raise UsageError("--invite and --recovery-code-file exclude each other")
    invitation = invitation_option(invite_code)
    if security is not None:
        from autosmime.cli.account import security_option

        security_option(security)
    if ca_file is not None and not ca_file.expanduser().is_file():
        raise UsageError(f"--ca-file: no such file {ca_file}")
    to_stdout = recovery_code_out == STDOUT
    code_out = Path(recovery_code_out).expanduser() if recovery_code_out and not to_stdout else None
    given = ServerGiven(
        imap=_hostport(imap, "imap", security), smtp=_hostport(smtp, "smtp", security), security=security,
        username=username, ca_file=str(ca_file.expanduser().absolute()) if ca_file else None,
        password_file=str(password_file.expanduser()) if password_file else None, ca_url=ca_url,
        ca_trust=str(ca_trust.expanduser()) if ca_trust else None, directory=directory,
        recovery_code=_read_code_file(recovery_code_file) if recovery_code_file else None,
        recovery_code_out=code_out, invitation=invitation, join_timeout=join_timeout)
    captured: list[str] = []
    home = home_dir(ctx)
    with Progress("starting ...", enabled=not as_json) as spinner:
        tty = sys.stdin.isatty()
        prompts = Prompts(ask_password=spinner.paused(_ask_password) if tty else None,
                          ask_code=spinner.paused(_ask_code) if tty else None,
                          show_join_code=spinner.paused(lambda c1: show_c1(c1, join_timeout, invitation is not None))
                          if tty or invitation is not None else None,
                          confirm_join=spinner.paused(ask_c2) if tty else None,
                          present_code=None if to_stdout else spinner.paused(_show_new_code),
                          progress=spinner.step)
        outcome = setup(home, address, given, prompts, code_sink=captured.append if to_stdout else None)
    code = captured[-1] if captured else None
    if as_json:
        click.echo(json.dumps(_as_json(outcome, code), indent=2))
    elif code is not None:
        click.echo(code)
    head = (f"set up {outcome.address} in {outcome.home}" if outcome.changed
            else f"{outcome.address} is already set up in {outcome.home}; nothing changed")
    if not as_json:
        click.echo(f"autosmime: {head}", err=True)
        for line in _describe(outcome):
            click.echo(f"autosmime: {line}", err=True)
        for note in outcome.notes:
            click.echo(f"autosmime: note: {note}", err=True)
        if outcome.changed:
            from autosmime.cli._output import next_steps

            next_steps(_next_steps(ctx, outcome, ctx.find_root().params.get("home") is not None))
