"""Adding a device: ``autosmime invite`` and ``autosmime approve`` on the device that has the keys.

    $ autosmime invite                                   # old device: prints a one-time code, valid 24 h
    $ autosmime --home /new/device setup me@example.org --invite CODE   # new device: joins by itself
    $ autosmime --home /new/device restore --join        # or without an invitation, then on the old device:
    $ autosmime approve                                  # ... and compare the codes on both screens

With an invitation, the old device's ``watch`` (or ``approve``) answers the new
device by itself; without one, the person compares two codes. The protocol is
in docs/backup-format.md, "Device join v1".
"""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from autosmime.cli import agent_for
from autosmime.cli._output import emit_json, plural, say, warn
from autosmime.errors import JoinCodeMismatch, JoinRefused, NoJoinRequest, UsageError

if TYPE_CHECKING:  # the commands load the cryptography when they run, not for --help
    from autosmime.agent.outcomes import RestoreOutcome
    from autosmime.vault.join import Invitation

__all__ = ["ask_c2", "invitation_option", "receive", "register", "show_c1"]


def invitation_option(text: str | None) -> Invitation | None:
    """``--invite CODE`` -> Invitation (BadInvitation, exit 2, for a mistyped code: checked before anything runs)."""
    from autosmime.vault.join import Invitation

    return None if text is None else Invitation.parse(text)


def show_c1(c1: str, timeout: float, invited: bool) -> None:
    if invited:
        say("asked your other device for the keys with your invitation; it answers by itself while "
            f"`autosmime watch` runs there (or run `autosmime approve` there; on a device that did not make "
            f"the invitation, `approve` shows a code to compare: {c1})")
    else:
        say(f"on your other device run `autosmime approve` and check it shows: {c1}")
    say(f"waiting up to {timeout:g} s for the approval...")


def ask_c2(c2: str) -> bool:
    """The person compares C2 with the approving device's screen; "no" stops the join."""
    say(f"an approval arrived; your other device should now show: {c2}")
    if not click.confirm("Does it show exactly this code?", default=False, err=True):
        raise JoinRefused("the approval's code was not confirmed; nothing was restored "
                          "(if the codes differed, someone may be tampering with your mailbox)")
    return True


def _refuse_unvouched(c2: str) -> bool:
    warn("an approval not made with your invitation was ignored (no terminal to compare its code on)")
    return False


def receive(ctx: click.Context, timeout: float, confirm_file: Path | None,
            invitation: Invitation | None) -> RestoreOutcome:
    """``restore --join``: the join on this (new) device, then the restore."""
    from autosmime.agent.join import join
    from autosmime.vault.join import confirm_from_file

    if confirm_file is None and invitation is None and not sys.stdin.isatty():
        raise UsageError("no terminal to confirm on: pass --confirm-file FILE, or --invite CODE")
    if confirm_file is not None:
        waiting = confirm_from_file(confirm_file, timeout=timeout)

        def confirm(c2: str) -> bool:
            say(f"an approval arrived; reading its code from {confirm_file}")
            ok = waiting(c2)
            if not ok:
                warn("an approval with a different code was ignored (someone may be tampering with your "
                     "mailbox); still waiting")
            return ok
    else:
        confirm = ask_c2 if sys.stdin.isatty() else _refuse_unvouched
    return join(agent_for(ctx), show_request=lambda c1: show_c1(c1, timeout, invitation is not None),
                confirm=confirm, timeout=timeout, invitation=invitation)


@click.command("invite")
@click.option("--valid", "hours", type=click.FloatRange(min=0.02, max=168), default=24, show_default=True,
              metavar="HOURS", help="How long the invitation can be used (at most 168 hours).")
@click.option("--list", "list_", is_flag=True, help="List this device's open invitations (not their codes).")
@click.option("--cancel", is_flag=True, help="Cancel every open invitation of this device.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with --json the code is in it).")
@click.pass_context
def invite_cmd(ctx: click.Context, hours: float, list_: bool, cancel: bool, as_json: bool) -> None:
    """Make a one-time code that lets a new device of yours in without comparing codes.

    Type the code on the new device (`autosmime setup ADDRESS --invite CODE`, or `autosmime restore --join
    --invite CODE`); this device's `autosmime watch` (or `autosmime approve`) then hands it the keys by itself.
    Whoever has the code and can write to your mailbox gets your keys once: keep it to yourself; it is used up
    by the first device that joins with it, and expires.
    """
    from autosmime.agent.join import cancel_invites, invite, invites

    if list_ and cancel:
        raise UsageError("--list and --cancel exclude each other")
    agent = agent_for(ctx)
    if list_:
        found = invites(agent)
        if as_json:
            emit_json({"invitations": found})
            return
        if not found:
            say("no open invitation on this device")
        for record in found:
            say(f"invitation {record['id']}: made {record['created']}, valid until {record['expires']}")
        return
    if cancel:
        count = cancel_invites(agent)
        if as_json:
            emit_json({"cancelled": count})
            return
        say(f"cancelled {plural(count, 'open invitation')}" if count else "no open invitation to cancel")
        return
    outcome = invite(agent, valid=_dt.timedelta(hours=hours))
    if as_json:
        emit_json({"code": outcome.code, "id": outcome.invite_id, "expires": outcome.expires})
        return
    say(f"invitation for a new device, valid until {outcome.expires} and for one device:")
    click.echo(outcome.code)  # stdout, alone, for scripts
    say(f"on the new device: autosmime setup {agent.account().email} --invite CODE")
    say("this device answers it by itself while `autosmime watch` runs here; otherwise run `autosmime approve`")


@click.command("approve")
@click.option("--confirm", "shown", metavar="CODE",
              help="The code the new device shows (for scripts; else you are asked on the terminal).")
@click.pass_context
def approve_cmd(ctx: click.Context, shown: str | None) -> None:
    """Let a new device of yours restore the keys (it runs `autosmime restore --join` or `setup`).

    A device that joins with one of this device's invitations is let in at once; for any other you compare
    the code it shows.
    """
    from autosmime.agent.join import approve, approve_invited
    from autosmime.vault.join import JoinRequest, find_request

    agent = agent_for(ctx)
    approvals, requests = approve_invited(agent)
    for approval in approvals:
        say(f"approved {approval.device!r}: it joined with your invitation and restores by itself")
    if shown is None and not sys.stdin.isatty():
        if not approvals:
            raise UsageError("no terminal to confirm on: pass --confirm CODE (the code the new device shows)")
        if requests:
            warn(f"{plural(len(requests), 'other join request')} left: compare codes with --confirm CODE")
        return
    if not requests:
        if approvals:
            return
        raise NoJoinRequest("no pending join request; run `autosmime restore --join` on the new device first")
    chosen: JoinRequest | None = None
    if shown is not None:
        chosen = find_request(requests, shown)
    else:
        for request in requests:
            say(f"join request from {request.device!r} at {request.created:%Y-%m-%d %H:%M:%S} UTC; "
                f"it should show: {request.code}")
            if click.confirm("Does the new device show exactly this code?", default=False, err=True):
                chosen = request
                break
        if chosen is None:
            raise JoinCodeMismatch("no join request was confirmed; nothing was sent")
    approval = approve(agent, chosen)
    say(f"approved {approval.device!r}; on the new device, confirm that it shows: {approval.c2}")
    click.echo(approval.c2)  # stdout, alone, for scripts (restore --join --confirm-file)


def register(group: click.Group) -> None:
    group.add_command(invite_cmd)
    group.add_command(approve_cmd)


