"""``autosmime backup`` and ``autosmime restore``: the key backup in the user's mailbox.

    $ autosmime --home ~/.autosmime backup --recovery-code-out ~/recovery-code.txt
    $ autosmime --home /new/device restore --recovery-code-file ~/recovery-code.txt

Status lines go to stderr. The recovery code is never printed: it is only
written to the file the user names (0600) or typed at a hidden prompt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from autosmime.cli import home_dir
from autosmime.errors import BackupError, UsageError


def _read_code(path: Path | None) -> str:
    if path is not None:
        try:
            text = path.read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read the recovery code file {path}: {getattr(e, 'strerror', None) or e}") \
                from None
        if not text:
            raise UsageError(f"the recovery code file {path} is empty")
        return text
    if not sys.stdin.isatty():
        raise UsageError("no recovery code: pass --recovery-code-file FILE (no terminal to ask on)")
    return click.prompt("Recovery code", hide_input=True, err=True).strip()


@click.command("backup")
@click.option("--recovery-code-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the recovery code to this file (0600), creating the code on first use.")
@click.pass_context
def backup_cmd(ctx: click.Context, recovery_code_out: Path | None) -> None:
    """Store an encrypted backup of every key in the mailbox's backup folder."""
    from autosmime.vault.backup import backup_after_change
    from autosmime.vault.store import Vault

    vault = Vault.open(home_dir(ctx), create=True)
    status = backup_after_change(vault, recovery_code_out=recovery_code_out)
    click.echo(f"autosmime: {status}", err=True)
    if recovery_code_out is not None:
        click.echo(f"autosmime: recovery code written to {recovery_code_out}; keep it offline", err=True)
    if vault.state.get("backup_pending"):
        raise BackupError("the key backup could not be stored now; it will be retried by the next command")


@click.command("restore")
@click.option("--recovery-code-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Read the recovery code from this file (else you are asked for it).")
@click.pass_context
def restore_cmd(ctx: click.Context, recovery_code_file: Path | None) -> None:
    """Restore every key from the newest valid backup in the mailbox."""
    from autosmime.vault.backup import restore

    code = _read_code(recovery_code_file)
    result = restore(home_dir(ctx), code=code)
    click.echo(f"autosmime: restored backup {result.seq} of {result.created}: "
               f"{result.keys} keys ({result.added} new on this device)", err=True)
    if result.skipped:
        click.echo(f"autosmime: warning: skipped {result.skipped} newer invalid backup(s)", err=True)


def register(group: click.Group) -> None:
    group.add_command(backup_cmd)
    group.add_command(restore_cmd)
