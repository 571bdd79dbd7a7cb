"""Publishing with the mailed token: real Dovecot, the directory mails through the stack's SMTP relay, the client
picks the token up over IMAP and confirms by itself."""

from __future__ import annotations

import os

import pytest

from autosmime.agent import publish as flow
from autosmime.agent.context import Agent
from autosmime.errors import PublishRejected
from autosmime.exchange.client import DirectoryClient
from autosmime.exchange.proofs import answer_challenge
from autosmime.mailbox.account import Account, save_account
from autosmime.mailbox.imap import ImapMailbox
from autosmime.vault.store import Vault
from tests.exchange.conftest import start_directory

pytestmark = pytest.mark.mailserver


@pytest.fixture
def mail_directory(pki, tmp_path, mailstack):
    running = start_directory(pki, tmp_path, smtp=("127.0.0.1", mailstack._ports.relay))
    yield running
    running.stop()


def token_of(account: Account, password: str, request_id: str) -> tuple[str, int]:
    with ImapMailbox.connect(account, password) as box:
        return flow.pick_up_token(box, request_id, 30)


def device(tmp_path, mailstack, email, password, user) -> tuple:
    home = tmp_path / email.split("@")[0]
    home.mkdir()
    pw = tmp_path / f"{home.name}.pw"
    pw.write_text(password)
    os.chmod(pw, 0o600)
    account = Account(**{**mailstack.account(email).__dict__, "password_file": str(pw)})
    save_account(home, account)
    Vault.open(home, create=True).add(user.key, user.cert, user.chain)
    return home, account


def test_publish_with_mailed_token(mail_directory, pki, tmp_path, mailstack, mail_user):
    email, password = mail_user
    user = pki.user(email)                      # a trusted CA that is not a fast-path CA: the mail round trip
    home, account = device(tmp_path, mailstack, email, password, user)
    done = flow.publish(Agent(home), mail_directory.url, token_wait=30)
    assert done.mailbox_proof == "mail" and done.address == email
    with DirectoryClient(mail_directory.url) as client:
        answer, _ = client.lookup(email)
    assert answer["certificates"][0]["sha256"] == done.sha256
    # The token mail is gone from INBOX once used.
    with ImapMailbox.connect(account, password) as box:
        assert box.search_header("INBOX", flow.TOKEN_HEADER, "v1") == []
    # The owner's history shows that publication, and it is theirs.
    [event] = flow.monitor(Agent(home))
    assert event.op == "publish" and event.mine and event.leaf_index == done.leaf_index
    # Withdrawn with a possession proof: the same 404 as never published.
    flow.unpublish(Agent(home))
    with DirectoryClient(mail_directory.url) as client, pytest.raises(Exception, match="no certificate"):
        client.lookup(email)
    assert [e.op for e in flow.monitor(Agent(home))] == ["publish", "unpublish"]


def test_token_is_bound_to_its_request_and_single_use(mail_directory, pki, tmp_path, mailstack):
    alice_email, alice_pw = mailstack.fresh_user()
    mallory_email, mallory_pw = mailstack.fresh_user()
    alice = pki.user(alice_email)
    mallory = pki.user(mallory_email)
    with DirectoryClient(mail_directory.url) as client:
        a = client.publish(alice.chain_pem)
        m = client.publish(mallory.chain_pem)
        a_token, _ = token_of(mailstack.account(alice_email), alice_pw, a["request"])
        m_token, _ = token_of(mailstack.account(mallory_email), mallory_pw, m["request"])
        # Mallory's own mailbox token does not confirm a request for Alice's address.
        with pytest.raises(PublishRejected, match="token"):
            client.confirm("publish", a["request"], token=m_token, proof=answer_challenge(a, alice.key, alice.cert))
        # The token without the key proves nothing either.
        with pytest.raises(PublishRejected):
            client.confirm("publish", a["request"], token=a_token)
        client.confirm("publish", a["request"], token=a_token, proof=answer_challenge(a, alice.key, alice.cert))
        # Replaying the used token fails.
        with pytest.raises(PublishRejected, match="no such request"):
            client.confirm("publish", a["request"], token=a_token, proof=answer_challenge(a, alice.key, alice.cert))


def test_unpublish_by_mailed_manage_token_for_a_lost_key(mail_directory, pki, tmp_path, mailstack):
    email, password = mailstack.fresh_user()
    user = pki.user(email)
    home, account = device(tmp_path, mailstack, email, password, user)
    done = flow.publish(Agent(home), mail_directory.url, token_wait=30)
    with DirectoryClient(mail_directory.url) as client:
        ch = client.unpublish(email, done.sha256, "mail")
        assert "proof" not in ch
        token, _ = token_of(account, password, ch["request"])
        client.confirm("unpublish", ch["request"], token=token)
        with pytest.raises(Exception, match="no certificate"):
            client.lookup(email)


def test_confirmation_mails_per_address_are_limited(pki, tmp_path, mailstack):
    from autosmime.errors import DirectoryRateLimited
    from autosmime.servers.directory.service import Limits

    limits = Limits(lookups_per_client=(1000, 60), lookups_per_address=(1000, 60), writes_per_client=(1000, 3600),
                    mails_per_address=(2, 3600))
    running = start_directory(pki, tmp_path, smtp=("127.0.0.1", mailstack._ports.relay), limits=limits)
    try:
        email, password = mailstack.fresh_user()
        user = pki.user(email)
        with DirectoryClient(running.url) as client:
            first = client.publish(user.chain_pem)
            client.publish(user.chain_pem)
            with pytest.raises(DirectoryRateLimited) as caught:
                client.publish(user.chain_pem)   # a third mail to the same mailbox within the hour
            assert 0 < caught.value.retry_after <= 3600
            # The requests that did mail still work.
            token, _ = token_of(mailstack.account(email), password, first["request"])
            client.confirm("publish", first["request"], token=token, proof=answer_challenge(first, user.key, user.cert))
    finally:
        running.stop()
