"""``autosmime status`` and ``autosmime watch``: this device at a glance, and the agent that keeps it in order.

    $ autosmime --home ~/.as status --json
    $ autosmime --home ~/.as watch                              # until SIGTERM / Ctrl-C
    $ autosmime --home ~/.as watch --print-systemd-unit > ~/.config/systemd/user/autosmime-watch.service

``status`` opens no connection: it reports what is recorded on this device,
with the times it was recorded. ``watch`` logs one line per event on stderr
(no secrets), exits 0 when stopped by SIGTERM or SIGINT, 1 for a
configuration that cannot work; server trouble is retried, never fatal.
"""

from __future__ import annotations

import dataclasses
import sys

import click

from autosmime.cli import agent_for, home_dir
from autosmime.cli._output import emit_json, plural
from autosmime.cli.backup import unauthentic_text


def _short(fp: str) -> str:
    return ":".join(fp[i:i + 2] for i in range(0, 16, 2)).upper()


def _doc(st: object) -> dict:
    """The --json document: the keys of the first `status` stay, the rest are added beside them."""
    from autosmime.agent.status import Status

    assert isinstance(st, Status)
    d = st.device
    asdict = dataclasses.asdict
    return {
        "home": str(d.home), "account": d.account, "keys": d.keys,
        "signing": asdict(d.signing) if d.signing else None,
        "encryption": asdict(d.encryption) if d.encryption else None,
        "backup": {"backup_pending": d.backup_pending, "backup_pending_reason": d.backup_pending_reason,
                   "backup_last_ok": d.backup_last_ok, "backup_seq_seen": d.backup_seq_seen,
                   "last_verified": asdict(st.backup.last_verified) if st.backup.last_verified else None},
        "recovery_code_stored": d.recovery_code_stored,
        "recovery_code_unseen": d.recovery_code_unseen,
        "checked_at": st.now,
        "certificate": asdict(st.certificate) if st.certificate else None,
        "publication": asdict(st.publication),
        "pending": asdict(st.pending),
        "watch": {"last_tick": st.watch_last_tick},
    }


def _lines(st: object) -> list[str]:
    from autosmime.agent.status import Status
    from autosmime.mailbox.text import server_text

    assert isinstance(st, Status)
    d = st.device
    lines = [f"home: {d.home}",
             f"account: {d.account['email']} ({d.account['imap']}, {d.account['security']})"
             if d.account else "account: none (run `autosmime setup ADDRESS` or `autosmime account add`)",
             "keys: " + (", ".join(f"{n} {s}" for s, n in sorted(d.keys.items())) or "none")]
    for role, summary in (("signing", d.signing), ("encryption", d.encryption)):
        if summary:
            lines.append(f"{role} certificate: {_short(summary.fingerprint)} until {summary.not_after[:10]}")
    c = st.certificate
    if c is None:
        lines.append("certificate: none active for this account")
    else:
        left = "expired" if c.expired else f"{plural(c.days_left, 'day')} left"
        lines.append(f"certificate: {_short(c.fingerprint)} for {c.address}, valid until {c.not_after[:10]} ({left})")
        checked = f", checked with the CA {c.renewal_checked}" if c.renewal_checked else ""
        lines.append(f"renewal: {'due now' if c.renewal_is_due else 'due'} from {c.renewal_due[:16].replace('T', ' ')}"
                     f" UTC ({c.renewal_source}{checked})")
    b = st.backup
    if b.queued:
        lines.append(f"backup pending: {server_text(b.queued_reason or '') or 'not yet uploaded'}")
    elif b.last_stored:
        lines.append(f"last backup: {b.last_stored} (#{b.seq_seen})")
    elif b.seq_seen is not None:  # restored here: the account's backups are another device's so far
        lines.append(f"last backup: backup #{b.seq_seen}, by another of your devices (none stored from this one yet)")
    else:
        lines.append("no backup made yet")
    v = b.last_verified
    if v is None:
        lines.append("backup last verified: never")
    elif v.ok:
        how = "read back right after it was stored" if v.by == "backup" else "fetched and opened with the recovery code"
        lines.append(f"backup last verified: {v.at} (#{v.seq}, {how})")
    else:
        lines.append(f"warning: the backup check of {v.at} failed: {server_text(v.problem or '')}")
    if v is not None and v.unauthentic:
        lines.append(f"warning: {unauthentic_text(v.unauthentic)}")
    lines.append("recovery code: " + ("stored on this device" if d.recovery_code_stored else "not on this device"))
    if d.recovery_code_unseen:
        lines.append("warning: the recovery code was never shown nor written out: run "
                     "`autosmime recovery-code show` and keep it offline, or no other device can restore your keys")
    p = st.publication
    if p.directory is None:
        lines.append("directory: none in use")
    else:
        shown = (f"published (log entry {p.leaf_index})" if p.leaf_index is not None else "published") \
            if p.published else "not seen published"
        lines.append(f"directory: {p.directory}: {shown}")
        if p.checkpoint_size is not None:
            lines.append(f"directory log: size {p.checkpoint_size}, consistent with every earlier view "
                         f"(last checkpoint stored {p.checkpoint_seen})")
        if p.last_check is not None:
            if p.last_check.ok:
                lines.append(f"directory log checked: {p.last_check.at} "
                             f"({plural(p.last_check.events, 'entry', 'entries')} for my address, "
                             "all mine)")
            else:
                lines.append(f"warning: the directory check of {p.last_check.at} failed: "
                             f"{server_text(p.last_check.problem or '')}")
    w = st.pending
    todo = []
    if w.backup_queued:
        todo.append("a queued backup")
    if w.renewal_due:
        todo.append("certificate renewal")
    if w.outbox:
        todo.append(f"{plural(w.outbox, 'message')} in the outbox")
    if w.publish_needed:
        todo.append("publishing the active certificate")
    for r in w.join_requests:
        todo.append(f"a join request from device {server_text(r.device)!r} (run `autosmime approve`)")
    for i in w.invitations:
        todo.append(f"an open invitation for a new device, until {i.expires}")
    lines.append("pending: " + ("; ".join(todo) if todo else "nothing"))
    lines.append(f"watch: last active {st.watch_last_tick}" if st.watch_last_tick else "watch: never ran here")
    return lines


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """This device at a glance: certificate, backup health, directory, pending work (no network)."""
    from autosmime.agent.status import status

    st = status(agent_for(ctx))
    if as_json:
        emit_json(_doc(st))
        return
    click.echo("\n".join(_lines(st)))


@click.command("watch")
@click.option("--print-systemd-unit", "print_unit", is_flag=True,
              help="Print a systemd user unit running this watch, and exit.")
@click.pass_context
def watch_cmd(ctx: click.Context, print_unit: bool) -> None:
    """Run in the background: renew when due, retry queued backups, check backup health and the directory's log,
    let in a new device that joins with an invitation made here (`autosmime invite`) and report other join
    requests. Stops on SIGTERM / Ctrl-C."""
    import logging
    import os
    import shutil

    home = home_dir(ctx)
    if print_unit:
        from autosmime.agent.watch import systemd_unit

        command = shutil.which("autosmime") or f"{sys.executable} -m autosmime"
        click.echo(systemd_unit(command, os.path.abspath(home)), nl=False)
        return
    from autosmime.agent.watch import Watcher

    root = logging.getLogger("autosmime")
    if not ctx.find_root().obj.get("debug"):
        root.setLevel(logging.INFO)   # the watch's own log lines; the library's INFO goes with them
    watcher = Watcher(agent_for(ctx))
    watcher.check_config()
    logging.getLogger("autosmime.agent.watch").info("watching %s", home)
    watcher.run()


def register(group: click.Group) -> None:
    group.add_command(status_cmd)
    group.add_command(watch_cmd)
