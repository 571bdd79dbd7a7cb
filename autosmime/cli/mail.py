"""``autosmime send`` and ``inbox``: mail through the user's own mailbox, signed and encrypted automatically.

    $ autosmime send --to bob@example.test --subject "Hello" < body.txt
    $ autosmime inbox --limit 5
    $ autosmime read 42            # one message of the inbox (cli.engine's read, with a UID)

The flows are autosmime.agent.send and autosmime.agent.inbox; this module parses and prints.
A message the mail server would not take stays in HOME/outbox and goes out with the next ``send``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from autosmime.cli._output import binary_stream, emit_json, plural, say, warn
from autosmime.errors import UsageError


def register(group: click.Group) -> None:
    group.add_command(send)
    group.add_command(inbox)


def _body() -> str:
    stream = binary_stream("stdin")
    if stream.isatty():
        raise UsageError("no message body: pipe it in (autosmime send ... < body.txt)")
    data = stream.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the message body is not UTF-8 text") from None


@click.command()
@click.option("--to", "to", multiple=True, metavar="ADDRESS", help="Recipient; repeatable.")
@click.option("--cc", "cc", multiple=True, metavar="ADDRESS", help="Copy recipient; repeatable.")
@click.option("--bcc", "bcc", multiple=True, metavar="ADDRESS",
              help="Blind copy recipient (never written into the message); repeatable.")
@click.option("--subject", required=True, help="The subject line.")
@click.option("--attach", "attach", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Attach FILE; repeatable.")
@click.option("--require-encryption", is_flag=True,
              help="Send nothing unless every recipient has a usable certificate.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_context
def send(ctx: click.Context, to: tuple[str, ...], cc: tuple[str, ...], bcc: tuple[str, ...], subject: str,
         attach: tuple[Path, ...], require_encryption: bool, as_json: bool) -> None:
    """Send a message (the body on standard input): signed always, encrypted when every recipient can read it."""
    from autosmime.agent.send import send_mail
    from autosmime.cli import agent_for

    if not to and not cc and not bcc:
        raise UsageError("no recipient: give --to ADDRESS")
    body = _body()
    outcome = send_mail(agent_for(ctx), to=to, cc=cc, bcc=bcc, subject=subject, body=body,
                        attachments=attach, require_encryption=require_encryption)
    for r in outcome.retried:
        if r.done:
            say(f"queued message {r.id} ({r.subject!r}) sent")
        else:
            warn(f"queued message {r.id} ({r.subject!r}) still waits: {r.error}")
    for w in outcome.warnings:
        warn(w)
    names = ", ".join(r.address for r in outcome.recipients)
    how = "encrypted and signed" if outcome.encrypted else "signed, not encrypted"
    stored = f"; copy in {outcome.sent_folder}" if outcome.sent_folder else ""
    say(f"sent to {names} ({how}){stored}")
    if as_json:
        emit_json(outcome.to_json())


def _cell(text: str, width: int) -> str:
    """``text`` in exactly ``width`` terminal columns (CJK characters take two)."""
    # From, Subject and the signer's address are written by whoever sent the mail: no escape
    # sequence (a retitled window, OSC 52 into the clipboard) or bidi override reaches the terminal.
    from autosmime.mailbox.text import fit, server_text

    return fit(server_text(text, limit=len(text) + 1), width)


@click.command()
@click.option("--folder", default="INBOX", show_default=True, help="The folder to list.")
@click.option("--limit", default=20, show_default=True, type=int, help="How many of the newest messages.")
@click.option("--json", "as_json", is_flag=True,
              help="A JSON list of records: uid, date, from, subject, encrypted, verdict, signer, summary, layers.")
@click.pass_context
def inbox(ctx: click.Context, folder: str, limit: int, as_json: bool) -> None:
    """List the newest messages of a folder, newest first, with their security state in plain words."""
    from autosmime.agent.inbox import inbox as list_inbox
    from autosmime.cli import agent_for

    messages = list_inbox(agent_for(ctx), folder, limit)
    if as_json:
        click.echo(json.dumps([m.to_json() for m in messages], indent=2))
        return
    if not messages:
        say(f"{folder} is empty")
        return
    for m in messages:
        date = (m.date or "")[:16].replace("T", " ")
        click.echo(f"{m.uid:>6}  {date:<16}  {_cell(m.sender, 30)}  {_cell(m.subject, 40)}  {m.security}")
    say(f"{plural(len(messages), 'message')} in {folder} (read one: autosmime read UID)")
