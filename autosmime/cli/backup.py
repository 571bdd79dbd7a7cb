"""``autosmime backup`` and ``autosmime restore``: the key backup in the user's mailbox.

    $ autosmime --home ~/.autosmime backup --recovery-code-out ~/recovery-code.txt
    $ autosmime --home /new/device restore --recovery-code-file ~/recovery-code.txt
    $ autosmime --home /new/device restore --join          # then, on the old device:
    $ autosmime --home ~/.autosmime approve                 # (adding a device: autosmime/cli/join.py)

Status lines go to stderr. The recovery code is never printed: it is only
written to the file the user names (0600) or typed at a hidden prompt.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from autosmime.cli import agent_for
from autosmime.cli._options import OutFile, is_stdout
from autosmime.cli._output import Progress, emit_json, plural, progress, say, warn
from autosmime.errors import BackupError, UsageError

if TYPE_CHECKING:
    from autosmime.agent.context import Agent
    from autosmime.agent.outcomes import BackupOutcome


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


def backup_lines(outcome: BackupOutcome) -> list[str]:
    """The status lines (stderr) for a backup outcome; the recovery code itself is never among them."""
    from autosmime.agent.outcomes import BackupState

    lines = []
    if outcome.code_file is not None:
        lines.append(f"recovery code written to {outcome.code_file}; keep it offline")
    if outcome.state is BackupState.NOTHING:
        lines.insert(0, "no key backup needed: the vault holds no keys yet")
    elif outcome.state is BackupState.PENDING:
        lines.insert(0, f"key backup pending (will retry): {outcome.reason}")
    elif outcome.was_pending:
        lines.insert(0, f"pending key backup stored as backup {outcome.seq} ({plural(outcome.keys, 'key')})")
    else:
        merged = f", {outcome.merged} taken in from your other devices" if outcome.merged else ""
        lines.insert(0, f"key backup {outcome.seq} stored ({plural(outcome.keys, 'key')}{merged})")
    if outcome.stored and outcome.unauthentic:
        lines.append(f"warning: {unauthentic_text(outcome.unauthentic)}")
    return lines


def unauthentic_text(n: int) -> str:
    return (f"{plural(n, 'message')} in the backup folder {'does' if n == 1 else 'do'} not open with your "
            "recovery code (planted by someone who can write to your mailbox, or left under an old code); "
            "they were left alone")


def backup_json(outcome: BackupOutcome, codes: list[str] | None = None) -> dict[str, Any]:
    """A backup outcome as JSON (docs/cli.md); the recovery code only when ``--recovery-code-out -`` asked."""
    doc: dict[str, Any] = {
        "state": outcome.state.value, "seq": outcome.seq, "keys": outcome.keys, "merged": outcome.merged,
        "reason": outcome.reason, "was_pending": outcome.was_pending, "code_created": outcome.code_created,
        "code_shown": outcome.code_shown, "code_file": str(outcome.code_file) if outcome.code_file else None,
        "unauthentic": outcome.unauthentic}
    if codes:
        doc["recovery_code"] = codes[-1]
    return doc


@contextlib.contextmanager
def code_to_stdout(ctx: click.Context, out: Path | None, spinner: Progress,
                   as_json: bool) -> Iterator[tuple[Agent, Path | None, list[str]]]:
    """The agent for a command with ``--recovery-code-out``, and the file to pass on.

    ``-`` hands the code (new or held) to standard output, alone, or to the
    JSON object with ``--json``, instead of a file. A code shown on the
    terminal pauses the spinner.
    """
    from autosmime.cli import _show_new_code

    agent = agent_for(ctx)
    codes: list[str] = []
    if not is_stdout(out):
        agent.present_code = spinner.paused(_show_new_code)
        yield agent, out, codes
        return

    def to_stdout(code: str) -> bool:
        codes.append(code)
        if not as_json:
            click.echo(code)
        return True

    agent.present_code = to_stdout
    yield agent, None, codes
    if not codes:  # the device already had a code: hand that one over, as a file would get it
        from autosmime.agent.backup import show_code

        try:
            to_stdout(show_code(agent, check=False).code)
        except BackupError:
            pass  # no code yet (nothing to back up)


@click.command("backup")
@click.option("--recovery-code-out", type=OutFile(),
              help="Write the recovery code to this file (0600), creating the code on first use; "
                   "'-' prints it on standard output.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object on standard output.")
@click.pass_context
def backup_cmd(ctx: click.Context, recovery_code_out: Path | None, as_json: bool) -> None:
    """Store an encrypted backup of every key in the mailbox's backup folder (and send a queued one)."""
    from autosmime.agent.backup import backup

    with progress("backing up your keys ...") as spinner, \
            code_to_stdout(ctx, recovery_code_out, spinner, as_json) as (agent, code_out, codes):
        outcome = backup(agent, recovery_code_out=code_out)
    if outcome.pending:  # a failure is one line, like every other
        note = f" (recovery code written to {outcome.code_file}; keep it offline)" if outcome.code_file else ""
        raise BackupError(f"key backup pending (will retry): {outcome.reason}; it will be retried by the next "
                          f"`autosmime backup` or key change{note}")
    if as_json:
        emit_json(backup_json(outcome, codes))
        return
    for line in backup_lines(outcome):
        say(line)


@click.command("restore")
@click.option("--recovery-code-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Read the recovery code from this file (else you are asked for it).")
@click.option("--join", "join_", is_flag=True,
              help="Get the recovery code from another device of yours instead (it runs `autosmime approve`).")
@click.option("--invite", "invite_code", metavar="CODE",
              help="With --join (implied): the invitation code `autosmime invite` printed on your other device; "
                   "that device then answers by itself, with no codes to compare.")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="With --join: seconds to wait for the approval (default 600).")
@click.option("--confirm-file", type=click.Path(dir_okay=False, path_type=Path),
              help="With --join, for scripts: the code `autosmime approve` printed, read from this file "
                   "(waited for) when the approval arrives, instead of asking.")
@click.option("--examine", type=click.IntRange(min=1), default=None, metavar="N",
              help="Examine the N newest backup messages (default 8): when messages planted in the folder hide "
                   "the real backups. Each costs up to a fifth of a second.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object on standard output.")
@click.pass_context
def restore_cmd(ctx: click.Context, recovery_code_file: Path | None, join_: bool, invite_code: str | None,
                timeout: float | None, confirm_file: Path | None, examine: int | None, as_json: bool) -> None:
    """Restore every key from the newest valid backup in the mailbox."""
    from autosmime.agent.backup import restore

    if join_ or invite_code is not None:
        from autosmime.cli.join import invitation_option, receive

        if recovery_code_file is not None or examine is not None:
            raise UsageError("--join excludes --recovery-code-file and --examine")
        result = receive(ctx, timeout if timeout is not None else 600, confirm_file, invitation_option(invite_code))
    else:
        if timeout is not None or confirm_file is not None:
            raise UsageError("--timeout and --confirm-file need --join")
        code = _read_code(recovery_code_file)
        with progress("restoring your keys from the mailbox ..."):
            result = restore(agent_for(ctx), code, examine=examine)
    if as_json:
        emit_json({"seq": result.seq, "created": result.created, "keys": result.keys, "added": result.added,
                   "skipped": result.skipped, "unauthentic": result.unauthentic})
        return
    say(f"restored backup {result.seq} of {result.created}: "
        f"{plural(result.keys, 'key')} ({result.added} new on this device)")
    if result.unauthentic:
        warn(unauthentic_text(result.unauthentic))
    elif result.skipped:
        warn(f"skipped {plural(result.skipped, 'newer invalid backup')}")


@click.group("recovery-code")
def recovery_code() -> None:
    """The account's recovery code: the one secret that opens every key backup."""


@recovery_code.command("show")
@click.option("--offline", is_flag=True, help="Do not check the code against the mailbox's key backups.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the code is in it).")
@click.pass_context
def recovery_code_show(ctx: click.Context, offline: bool, as_json: bool) -> None:
    """Print this device's recovery code on stdout (keep it offline), checked against the mailbox's backups."""
    from autosmime.agent.backup import show_code

    shown = show_code(agent_for(ctx), check=not offline)
    if shown.opens is False:   # a code that opens nothing is not handed out as if it worked
        raise BackupError(shown.detail + " (--offline prints this device's code anyway)")
    if as_json:
        emit_json({"recovery_code": shown.code, "opens_backups": shown.opens, "backups": shown.backups,
                   "detail": shown.detail or None})
    else:
        click.echo(shown.code)
    if shown.opens is None and not offline:
        say(shown.detail)


@recovery_code.command("rotate")
@click.option("--recovery-code-out", type=OutFile(),
              help="Write the new recovery code to this file (0600); '-' prints it on standard output.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object on standard output.")
@click.pass_context
def recovery_code_rotate(ctx: click.Context, recovery_code_out: Path | None, as_json: bool) -> None:
    """Replace the account's recovery code: a full backup under a new code, verified, then the old backups go."""
    from autosmime.agent.backup import rotate_code

    with progress("rotating the recovery code ...") as spinner, \
            code_to_stdout(ctx, recovery_code_out, spinner, as_json) as (agent, code_out, codes):
        outcome = rotate_code(agent, recovery_code_out=code_out)
    if as_json:
        emit_json(backup_json(outcome, codes))
        return
    say(f"new recovery code in use; key backup {outcome.seq} stored ({plural(outcome.keys, 'key')}); "
        "backups under the old code removed")
    if outcome.code_file is not None:
        say(f"recovery code written to {outcome.code_file}; keep it offline")
    elif not outcome.code_shown:
        warn("the new code was neither shown nor written out; "
             "run `autosmime recovery-code show` and keep it offline")


def register(group: click.Group) -> None:
    group.add_command(backup_cmd)
    group.add_command(restore_cmd)
    group.add_command(recovery_code)
