"""Shared fixtures for the whole suite: the loopback mail stack.

``mailstack`` (session): a running :class:`autosmime.devstack.MailStack`
(Dovecot IMAP/LMTP + Postfix SMTP as root, aiosmtpd relay otherwise).
``mail_user`` (function): ``(email, password)`` of a never-used user, i.e.
an empty mailbox for each test without restarting the servers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from autosmime.devstack.mailserver import MailStack, dovecot_available


@pytest.fixture(scope="session")
def mailstack() -> Iterator[MailStack]:
    if not dovecot_available():
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd; .ci/run does this)")
    stack = MailStack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def mail_user(mailstack: MailStack) -> tuple[str, str]:
    return mailstack.fresh_user()
