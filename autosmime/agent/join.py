"""Device join flows: a new device asks (``join``), an existing one answers (``requests`` + ``approve``).

    >>> from autosmime.agent.join import join, requests, approve
    >>> join(new_agent, show_request=print, confirm=lambda c2: c2 == typed)   # doctest: +SKIP
    RestoreOutcome(seq=3, ...)
    >>> [r] = requests(old_agent); approve(old_agent, r).c2                   # doctest: +SKIP
    '3141 5926 5358'

The protocol steps are in :mod:`autosmime.vault.join` (docs/backup-format.md,
"Device join v1"); here they are run against the agent's mailbox, with the
waiting, the user's confirmations and the clean-up that must happen whatever
the outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from autosmime._words import plural
from autosmime.agent.backup import restore
from autosmime.agent.context import Agent
from autosmime.agent.outcomes import Approval, RestoreOutcome
from autosmime.errors import BackupError, JoinRefused, JoinTimeout, MailboxError
from autosmime.mailbox.session import MailboxSession
from autosmime.vault import join as protocol
from autosmime.vault.join import JoinRequest
from autosmime.vault.recovery import load_code

__all__ = ["approve", "join", "requests"]

log = logging.getLogger(__name__)


def requests(agent: Agent) -> list[JoinRequest]:
    """Fresh join requests in the folder, newest first (NoJoinRequest if none)."""
    with agent.open_mailbox() as box:
        return protocol.pending_requests(box, agent.account().backup_folder)


def approve(agent: Agent, request: JoinRequest) -> Approval:
    """Answer ``request`` (whose C1 the user confirmed) with this device's recovery code, sealed for it."""
    code = load_code(agent.home)
    if code is None:
        raise BackupError("no recovery code on this device; run `autosmime backup --recovery-code-out FILE`")
    account = agent.account()
    with agent.open_mailbox() as box:
        c2 = protocol.approve(box, address=account.email, folder=account.backup_folder, code=code, request=request)
    return Approval(device=request.device, c2=c2)


def _withdraw(agent: Agent, box: MailboxSession, ticket: protocol.Ticket) -> None:
    """Delete our request and its answers, on a new connection if this one broke; never raises."""
    folder = agent.account().backup_folder
    try:
        protocol.withdraw(box, folder, ticket)
        return
    except MailboxError:
        pass
    try:
        with agent.open_mailbox() as fresh:
            protocol.withdraw(fresh, folder, ticket)
    except MailboxError as e:
        log.warning("could not withdraw the join request (deleted after 15 minutes anyway): %s", e)


def join(agent: Agent, *, show_request: Callable[[str], None], confirm: Callable[[str], bool],
         timeout: float = 600, device: str | None = None, interval: float = 1.0) -> RestoreOutcome:
    """Ask an existing device for the recovery code, then restore every key with it.

    ``show_request(C1)`` is called once the request is in the folder. For
    each answer that decrypts, ``confirm(C2)`` decides: True restores; False
    rejects that answer and keeps waiting (it may raise JoinRefused to stop).
    Raises JoinTimeout (or JoinRefused if answers arrived but none was
    confirmed) after ``timeout`` seconds. The request and every answer to it
    are deleted whatever happens.
    """
    account = agent.account()
    folder = account.backup_folder
    deadline = time.monotonic() + timeout
    refused = 0
    code: str | None = None
    with agent.open_mailbox() as box:
        ticket = protocol.open_request(box, address=account.email, folder=folder, device=device or agent.device)
        try:
            show_request(ticket.code)
            while code is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if refused:
                        raise JoinRefused(f"{plural(refused, 'answer')} arrived but none was confirmed; nothing was restored")
                    raise JoinTimeout(f"no approval within {timeout:g} s; the join request was withdrawn")
                for answer in protocol.poll_answers(box, folder, ticket, wait=min(remaining, 5), interval=interval):
                    if confirm(answer.c2):
                        code = answer.code
                        break
                    refused += 1
                    protocol.reject_answer(box, folder, answer)
        finally:
            _withdraw(agent, box, ticket)
    return restore(agent, code)
