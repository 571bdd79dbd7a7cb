"""Device join flows: a new device asks (``join``), an existing one answers (``requests`` + ``approve``).

    >>> from autosmime.agent.join import join, requests, approve
    >>> join(new_agent, show_request=print, confirm=lambda c2: c2 == typed)   # doctest: +SKIP
    RestoreOutcome(seq=3, ...)
    >>> [r] = requests(old_agent); approve(old_agent, r).c2                   # doctest: +SKIP
    '3141 5926 5358'

With an invitation nobody compares codes: the old device makes one
(``invite``), the new one joins with it, and the old device's ``watch`` (or
``approve``) answers by itself (``approve_invited``):

    >>> code = invite(old_agent).code                                          # doctest: +SKIP
    >>> join(new_agent, show_request=print, confirm=no, invitation=Invitation.parse(code))  # doctest: +SKIP

The protocol steps are in :mod:`autosmime.vault.join` (docs/backup-format.md,
"Device join v1"); here they are run against the agent's mailbox, with the
waiting, the user's confirmations and the clean-up that must happen whatever
the outcome.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable
from typing import Any

from autosmime._words import plural
from autosmime.agent.backup import restore
from autosmime.agent.context import Agent
from autosmime.agent.outcomes import Approval, InviteOutcome, RestoreOutcome
from autosmime.errors import BackupError, JoinRefused, JoinTimeout, MailboxError, NoJoinRequest, UsageError
from autosmime.mailbox.session import MailboxSession
from autosmime.vault import join as protocol
from autosmime.vault.join import Invitation, JoinRequest
from autosmime.vault.recovery import load_code

__all__ = ["approve", "approve_invited", "cancel_invites", "invite", "invites", "join", "receive_code", "requests"]

log = logging.getLogger(__name__)

INVITES = "join_invites"  # vault state: [{"id", "secret", "created", "expires"}], this device's open invitations
DEFAULT_INVITE_LIFETIME = _dt.timedelta(hours=24)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def _stamp(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _alive(records: Any, now: _dt.datetime) -> list[dict]:
    """The well-formed, unexpired invitation records of ``records`` (the vault state's value)."""
    alive = []
    for r in records if isinstance(records, list) else []:
        try:
            expires = _dt.datetime.strptime(r["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC)
            usable = isinstance(r["id"], str) and isinstance(r["secret"], str) \
                and len(r["secret"]) == protocol.INVITE_SECRET_CHARS
        except (KeyError, TypeError, ValueError):
            continue
        if usable and expires > now:
            alive.append(r)
    return alive


def _recovery_code(agent: Agent) -> str:
    code = load_code(agent.home)
    if code is None:
        raise BackupError("no recovery code on this device; run `autosmime backup --recovery-code-out FILE`")
    return code


def invite(agent: Agent, *, valid: _dt.timedelta = DEFAULT_INVITE_LIFETIME,
           now: _dt.datetime | None = None) -> InviteOutcome:
    """A new one-time invitation for a new device, kept (with its expiry) in this device's vault.

    This device must hold the recovery code (it is what the invitation hands
    over). ``valid`` is at most 7 days.
    """
    if not _dt.timedelta(minutes=1) <= valid <= protocol.MAX_INVITE_LIFETIME:
        raise UsageError("an invitation is valid for 1 minute to 7 days")
    _recovery_code(agent)
    agent.account()
    now = now or _now()
    invitation = Invitation.new()
    record = {"id": invitation.invite_id, "secret": invitation.secret, "created": _stamp(now),
              "expires": _stamp(now + valid)}
    agent.vault(create=False).modify_state(INVITES, lambda old: [*_alive(old, now), record])
    log.info("made invitation %s, valid until %s", record["id"], record["expires"])
    return InviteOutcome(invitation.code, invitation.invite_id, record["expires"])


def invites(agent: Agent, *, now: _dt.datetime | None = None) -> list[dict[str, str]]:
    """This device's open invitations (id, created, expires; never the secret), oldest first."""
    vault = agent.vault(create=False)
    return [{k: r[k] for k in ("id", "created", "expires")} for r in _alive(vault.state.get(INVITES), now or _now())]


def cancel_invites(agent: Agent, *, now: _dt.datetime | None = None) -> int:
    """Forget every open invitation of this device; returns how many there were."""
    count = len(invites(agent, now=now))
    agent.vault(create=False).modify_state(INVITES, lambda old: None)
    return count


def _claim(agent: Agent, invite_id: str, now: _dt.datetime) -> Invitation | None:
    """Take invitation ``invite_id`` out of the vault (single use); None if it is not open (any more)."""
    taken: list[Invitation] = []

    def take(old: Any) -> list[dict] | None:
        alive = _alive(old, now)
        for r in alive:
            if r["id"] == invite_id and not taken:
                taken.append(Invitation(r["secret"]))
        rest = [r for r in alive if r["id"] != invite_id]
        return rest or None

    agent.vault(create=False).modify_state(INVITES, take)
    return taken[0] if taken else None


def _give_back(agent: Agent, record: dict) -> None:
    agent.vault(create=False).modify_state(INVITES, lambda old: [*_alive(old, _now()), record])


def approve_invited(agent: Agent, *, box: MailboxSession | None = None,
                    now: _dt.datetime | None = None) -> tuple[list[Approval], list[JoinRequest]]:
    """Answer every pending request made with one of this device's open invitations.

    Returns (approvals, the other fresh requests: those need the user to
    compare codes). An invitation answers one request, then is gone; a
    request naming an invitation whose HMAC does not check out is left for
    the user (and logged: someone who can write to the mailbox tried).
    """
    now = now or _now()
    if box is None:
        with agent.open_mailbox() as fresh:
            return approve_invited(agent, box=fresh, now=now)
    account = agent.account()
    try:
        found = protocol.pending_requests(box, account.backup_folder, now=now, limit=None)
    except NoJoinRequest:
        return [], []
    records = {r["id"]: r for r in _alive(agent.vault(create=False).state.get(INVITES), now)}
    approvals: list[Approval] = []
    others: list[JoinRequest] = []
    for request in found:
        record = records.get(request.invite_id or "")
        if record is None:
            others.append(request)
            continue
        if not Invitation(record["secret"]).vouches_for(request):
            log.warning("a join request from %r names invitation %s but was not made with it; not answered",
                        request.device, request.invite_id)
            others.append(request)
            continue
        invitation = _claim(agent, record["id"], now)
        if invitation is None:
            continue  # used meanwhile (by another process of this device)
        try:
            c2 = protocol.approve(box, address=account.email, folder=account.backup_folder,
                                  code=_recovery_code(agent), request=request, invitation=invitation)
        except BaseException:
            _give_back(agent, record)
            raise
        del records[record["id"]]
        log.info("approved the join request from %r on invitation %s", request.device, record["id"])
        approvals.append(Approval(device=request.device, c2=c2, invited=True))
    return approvals, others[:protocol.MAX_REQUESTS]


def requests(agent: Agent) -> list[JoinRequest]:
    """Fresh join requests in the folder, newest first (NoJoinRequest if none)."""
    with agent.open_mailbox() as box:
        return protocol.pending_requests(box, agent.account().backup_folder)


def approve(agent: Agent, request: JoinRequest) -> Approval:
    """Answer ``request`` (whose C1 the user confirmed) with this device's recovery code, sealed for it."""
    code = _recovery_code(agent)
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


def receive_code(agent: Agent, *, show_request: Callable[[str], None], confirm: Callable[[str], bool],
                 timeout: float = 600, device: str | None = None, interval: float = 1.0,
                 invitation: Invitation | None = None) -> str:
    """Ask an existing device for the recovery code; returns it (not yet used nor saved).

    ``show_request(C1)`` is called once the request is in the folder. An
    answer made on our ``invitation`` (its HMAC checks out) is taken at once.
    For any other answer that decrypts, ``confirm(C2)`` decides: True takes
    it; False rejects that answer and keeps waiting (it may raise JoinRefused
    to stop). Raises JoinTimeout (or JoinRefused if answers arrived but none
    was confirmed) after ``timeout`` seconds. The request and every answer to
    it are deleted whatever happens.
    """
    account = agent.account()
    folder = account.backup_folder
    deadline = time.monotonic() + timeout
    refused = 0
    with agent.open_mailbox() as box:
        ticket = protocol.open_request(box, address=account.email, folder=folder, device=device or agent.device,
                                       invitation=invitation)
        try:
            show_request(ticket.code)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if refused:
                        raise JoinRefused(f"{plural(refused, 'answer')} arrived but none was confirmed; nothing was restored")
                    raise JoinTimeout(f"no approval within {timeout:g} s; the join request was withdrawn")
                for answer in protocol.poll_answers(box, folder, ticket, wait=min(remaining, 5), interval=interval):
                    if answer.invited or confirm(answer.c2):
                        return answer.code
                    refused += 1
                    protocol.reject_answer(box, folder, answer)
        finally:
            _withdraw(agent, box, ticket)


def join(agent: Agent, *, show_request: Callable[[str], None], confirm: Callable[[str], bool],
         timeout: float = 600, device: str | None = None, interval: float = 1.0,
         invitation: Invitation | None = None) -> RestoreOutcome:
    """Ask an existing device for the recovery code (:func:`receive_code`), then restore every key with it."""
    code = receive_code(agent, show_request=show_request, confirm=confirm, timeout=timeout, device=device,
                        interval=interval, invitation=invitation)
    return restore(agent, code)
