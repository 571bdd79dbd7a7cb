"""Shared fixtures for the whole suite: the loopback mail stack.

``mailstack`` (session): a running :class:`autosmime.devstack.MailStack`
(Dovecot IMAP/LMTP + Postfix SMTP as root, aiosmtpd relay otherwise).
``mail_user`` (function): ``(email, password)`` of a never-used user, i.e.
an empty mailbox for each test without restarting the servers.

Property tests explore fresh random examples on a developer's machine; under
CI (``CI`` set, as .ci/run does) they replay a fixed derandomised sequence, so
a landing is never decided by the luck of the draw. The ``slow`` campaigns
(``pytest -m slow``) are where new random examples are hunted at volume.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

# No deadlines: speed is measured by the benchmarks, never by timed assertions, and on a shared
# machine one slow example would fail a property that holds.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

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


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[object]:
    """A private PostgreSQL cluster on a loopback port for the session (autosmime.devstack.postgres)."""
    from autosmime.devstack.postgres import PostgresCluster, postgres_available

    if not postgres_available():
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; scripts/install.sh does this)")
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) of an empty database made for this session.

    Tests that need a database of their own call ``postgres_cluster.url("name")``.
    """
    return postgres_cluster.url("autosmime_test")


@pytest.fixture(scope="session")
def ldap_server() -> Iterator[object]:
    """A private slapd on loopback ports for the session (autosmime.devstack.ldap): ldap:// with StartTLS and
    ldaps://, base dc=example,dc=test, readable anonymously. Under CI a missing slapd fails instead of skipping."""
    from autosmime.devstack.ldap import LdapServer, slapd_available

    if not slapd_available():
        message = "slapd is not installed (apt-get install slapd ldap-utils; scripts/install.sh does this)"
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must run every peer")
        pytest.skip(message)
    server = LdapServer.start()
    try:
        yield server
    finally:
        server.stop()
