"""End to end on real servers: Dovecot + Postfix (DKIM-signing) + the CA (SQLite) + the client.

enroll -> certificate in the vault -> in the backup -> renew -> the old key retained and still
decrypting; revoke; and the clear errors (CA unreachable, no challenge mail, reply rejected).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography import x509

from autosmime.agent.enrol import Timeouts, client_for, enrol
from autosmime.errors import CAUnreachable, ChallengeMailTimeout, ReplyRejected
from autosmime.mailbox.account import load_account
from autosmime.mailbox.credentials import get_password
from autosmime.mailbox.imap import ImapMailbox
from autosmime.mailbox.smtp import send as smtp_send
from autosmime.vault.store import Vault
from tests.enroll.conftest import add_account, run_cli


def _client_env(stack: dict[str, str]) -> dict[str, str]:
    return {"AUTOSMIME_DNS_ZONE": stack["DNS_ZONE"]}   # the client checks the CA's DKIM too


def _active(home: Path, address: str):  # type: ignore[no-untyped-def]
    return [e for e in Vault.open(home, create=False).entries() if e.email == address]


def test_enroll_backup_renew_revoke(devstack: dict[str, str], tmp_path: Path) -> None:
    enroll_backup_renew_revoke(devstack, tmp_path / "alice")


def test_enroll_backup_renew_revoke_postgres(devstack_pg: dict[str, str], tmp_path: Path) -> None:
    enroll_backup_renew_revoke(devstack_pg, tmp_path / "alice")


def enroll_backup_renew_revoke(devstack: dict[str, str], home: Path) -> None:
    address = add_account(home, devstack, "alice")
    r = run_cli("--home", str(home), "enroll", "--ca", devstack["CA_URL"], env=_client_env(devstack))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"enrolled {address}: issued by ")
    assert "key backup 1 stored" in r.stderr

    # In the vault, chaining to the stack's S/MIME root.
    [first] = _active(home, address)
    assert first.status == "active" and first.source == "acme"
    root = x509.load_pem_x509_certificate(Path(devstack["CA_TRUST"]).read_bytes())
    assert first.chain                              # the issuing CA (the root is what CA_TRUST holds)
    first.cert.verify_directly_issued_by(first.chain[0])
    first.chain[-1].verify_directly_issued_by(root)
    san = first.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [address]
    assert first.key.key_size == 3072

    # In the backup, and the challenge mail is gone from INBOX.
    account = load_account(home)
    password = get_password(account, home)
    with ImapMailbox.connect(account, password) as box:
        assert box.search_header(account.backup_folder, "Subject", "") != []
        assert box.search_header("INBOX", "Subject", "ACME:") == []
        assert box.search_header("Sent", "Subject", "ACME:") == []

    # A message encrypted to the first certificate.
    from autosmime.smime.decrypt import decrypt
    from autosmime.smime.encrypt import encrypt

    plain = f"From: bob@{devstack['DOMAIN']}\r\nTo: {address}\r\nSubject: old\r\n\r\nsecret\r\n".encode()
    sealed = encrypt(plain, [first.cert])

    # Not due yet: renew does nothing.
    r = run_cli("--home", str(home), "renew", env=_client_env(devstack))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("not due: renewal at ") and "(ARI)" in r.stdout   # the CA's renewalInfo

    # Forced renewal: a new key and certificate; the old one retired but kept, and still decrypting.
    r = run_cli("--home", str(home), "renew", "--force", env=_client_env(devstack))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"renewed {address}: ")
    assert "key backup 2 stored (2 keys)" in r.stderr      # the retired key is in the backup too
    entries = _active(home, address)
    assert len(entries) == 2
    old = next(e for e in entries if e.fingerprint == first.fingerprint)
    new = next(e for e in entries if e.fingerprint != first.fingerprint)
    assert old.status == "retired" and new.status == "active"
    assert new.cert.public_key().public_numbers() != first.cert.public_key().public_numbers()
    keys = Vault.open(home, create=False).decryption_keys()
    assert b"secret" in decrypt(sealed, keys).message

    # Revoke the current certificate: the key stays (revoked).
    r = run_cli("--home", str(home), "revoke", "--reason", "superseded", env=_client_env(devstack))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("revoked (superseded): ")
    statuses = {e.fingerprint: e.status for e in _active(home, address)}
    assert statuses == {first.fingerprint: "retired", new.fingerprint: "revoked"}


def test_ca_unreachable_is_one_clear_line(devstack: dict[str, str], tmp_path: Path) -> None:
    from autosmime.devstack._procs import free_ports

    home = tmp_path / "bob"
    add_account(home, devstack, "bob")
    dead = f"http://127.0.0.1:{free_ports(1)[0]}/acme/directory"
    r = run_cli("--home", str(home), "enroll", "--ca", dead)
    assert r.returncode == 1
    assert r.stderr.startswith("autosmime: error: the CA at 127.0.0.1:") and "cannot be reached" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_plain_http_to_a_remote_ca_is_refused(devstack: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "bob2"
    add_account(home, devstack, "bob")
    r = run_cli("--home", str(home), "enroll", "--ca", "http://ca.example.org/acme/directory")
    assert r.returncode == 2
    assert "only loopback addresses may use http" in r.stderr


def _session(home: Path, stack: dict[str, str], name: str):  # type: ignore[no-untyped-def]
    add_account(home, stack, name)
    account = load_account(home)
    password = get_password(account, home)
    vault = Vault.open(home)
    acme, _record = client_for(vault, stack["CA_URL"])

    def send(raw: bytes, sender: str, rcpts: list[str]) -> None:
        smtp_send(account, password, raw, sender, rcpts)

    return account, password, vault, acme, send


def test_no_challenge_mail_says_how_long_it_waited(devstack: dict[str, str], tmp_path: Path) -> None:
    # carol's session watches carol's INBOX while the order is for dave: the CA mails dave.
    account, password, vault, acme, send = _session(tmp_path / "carol", devstack, "carol")
    with ImapMailbox.connect(account, password) as box, pytest.raises(ChallengeMailTimeout) as info:
        enrol(address=f"dave@{devstack['DOMAIN']}", acme=acme, box=box, send=send, vault=vault,
              key_type="p256", timeouts=Timeouts(mail=2.0, early_post_after=0.5, validation=10))
    assert "no challenge mail from " in str(info.value) and "after waiting 2 s" in str(info.value)
    assert vault.entries() == []


def test_a_wrong_digest_is_reply_rejected(devstack: dict[str, str], tmp_path: Path) -> None:
    account, password, vault, acme, send = _session(tmp_path / "erin", devstack, "erin")
    sent: list[bytes] = []

    def tampering_send(raw: bytes, sender: str, rcpts: list[str]) -> None:
        lines = raw.split(b"\r\n")
        i = lines.index(b"-----BEGIN ACME RESPONSE-----")
        lines[i + 1] = b"A" * 43                      # a well-formed digest of something else
        sent.append(b"\r\n".join(lines))
        send(sent[-1], sender, rcpts)

    with ImapMailbox.connect(account, password) as box, pytest.raises(ReplyRejected) as info:
        enrol(address=account.email, acme=acme, box=box, send=tampering_send, vault=vault, key_type="p256",
              timeouts=Timeouts(mail=30, early_post_after=10, validation=30))
    assert "rejected the challenge reply" in str(info.value)
    assert len(sent) == 1                           # 24-byte token-part1: both readings agree, no retry
    assert vault.entries() == []
    with ImapMailbox.connect(account, password) as box:
        assert box.search_header("INBOX", "Subject", "ACME:") == []   # the challenge is cleaned up anyway


def test_an_unreachable_ca_during_client_setup(tmp_path: Path) -> None:
    from autosmime.devstack._procs import free_ports
    from autosmime.enroll.client import AcmeClient, new_account_key

    client = AcmeClient(f"http://127.0.0.1:{free_ports(1)[0]}/acme/directory", new_account_key())
    with pytest.raises(CAUnreachable, match="cannot be reached while reading the directory: connection refused$"):
        client.register()   # in plain words, not requests' "HTTPConnectionPool(...): Max retries exceeded ..."




def test_rate_limited_is_its_own_clear_error(devstack: dict[str, str], tmp_path: Path) -> None:
    from autosmime.errors import RateLimited

    account, password, vault, acme, send = _session(tmp_path / "frank", devstack, "frank")
    with pytest.raises(RateLimited) as info:
        for _ in range(20):             # the CA allows a few challenge mails per address per hour
            acme.new_order(account.email)
    assert str(info.value).startswith("rate limited by the CA while ordering a certificate for frank@")
    home = tmp_path / "frank"
    r = run_cli("--home", str(home), "enroll", "--ca", devstack["CA_URL"], env=_client_env(devstack))
    assert r.returncode == 1 and r.stderr.startswith("autosmime: error: rate limited by the CA")
    assert len(r.stderr.splitlines()) == 1 and vault.entries() == []


def test_forged_challenges_and_other_mail_are_passed_over(devstack: dict[str, str], tmp_path: Path) -> None:
    """While the order runs, a mail in the CA's name without its DKIM signature and an ordinary
    mail arrive first: neither is answered or removed, and the real challenge still is."""
    account, password, vault, acme, send = _session(tmp_path / "dave", devstack, "dave")
    ca_from = "acme@ca.example.test"            # ca init's mail_from for the devstack's CA domain
    bob = f"bob@{devstack['DOMAIN']}"
    bob_password = (Path(devstack["PASSWORDS_DIR"]) / bob).read_text().strip()
    bob_account = load_account(tmp_path / "dave")
    bob_account.email = bob_account.username = bob
    replies: list[bytes] = []
    real_new_order = acme.new_order

    def new_order_with_noise(address: str, **kw):  # type: ignore[no-untyped-def]
        forged = (f"From: {ca_from}\r\nTo: {address}\r\nSubject: ACME: {'Q' * 32}\r\n"
                  "Auto-Submitted: auto-generated; type=acme\r\nMessage-ID: <forged@example.test>\r\n"
                  "Date: Sat, 5 Dec 2026 10:00:00 +0000\r\n\r\nanswer me\r\n").encode()
        ordinary = f"From: {bob}\r\nTo: {address}\r\nSubject: lunch?\r\n\r\n{'x' * 200_000}\r\n".encode()
        smtp_send(bob_account, bob_password, forged, bob, [address])
        smtp_send(bob_account, bob_password, ordinary, bob, [address])
        time.sleep(0.5)                      # both are in INBOX before the CA's own mail
        return real_new_order(address, **kw)

    acme.new_order = new_order_with_noise  # type: ignore[method-assign]

    def recording_send(raw: bytes, sender: str, rcpts: list[str]) -> None:
        replies.append(raw)
        send(raw, sender, rcpts)

    from autosmime.enroll.challenges import zone_dnsfunc

    with ImapMailbox.connect(account, password) as box:
        result = enrol(address=account.email, acme=acme, box=box, send=recording_send, vault=vault,
                       key_type="p256", dnsfunc=zone_dnsfunc(devstack["DNS_ZONE"]),
                       timeouts=Timeouts(mail=30, early_post_after=10, validation=30))
    assert result.cert is not None and len(replies) == 1
    assert b"forged@example.test" not in replies[0]
    with ImapMailbox.connect(account, password) as box:
        assert len(box.search_header("INBOX", "Message-ID", "forged@example.test")) == 1
        assert len(box.search_header("INBOX", "Subject", "lunch?")) == 1


def test_a_backup_that_needs_the_accounts_code_does_not_hide_the_certificate(devstack: dict[str, str],
                                                                             tmp_path: Path) -> None:
    """A second device enrolling before it restored: the certificate is issued and kept, and the
    missing backup is one warning (the account's backups are under a code this device lacks)."""
    first, second = tmp_path / "bob-laptop", tmp_path / "bob-phone"
    address = add_account(first, devstack, "bob")
    r = run_cli("--home", str(first), "enroll", "--ca", devstack["CA_URL"], env=_client_env(devstack))
    assert r.returncode == 0, r.stderr
    add_account(second, devstack, "bob")
    r = run_cli("--home", str(second), "enroll", "--ca", devstack["CA_URL"], env=_client_env(devstack))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"enrolled {address}: ")
    assert "warning: the new key is not backed up yet:" in r.stderr
    assert [e.status for e in _active(second, address)] == ["active"]


def test_polling_without_idle_and_the_sent_copy_is_removed(devstack: dict[str, str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A server without IDLE is polled; a provider that files the reply in Sent (as Gmail does)
    gets that copy removed along with the challenge."""
    from autosmime.agent.enrol import InboxWatch

    monkeypatch.setattr(InboxWatch, "use_idle", False)
    account, password, vault, acme, send = _session(tmp_path / "carol", devstack, "carol")
    filed: list[bytes] = []

    def send_and_file(raw: bytes, sender: str, rcpts: list[str]) -> None:
        send(raw, sender, rcpts)
        with ImapMailbox.connect(account, password) as other:
            other.append("Sent", raw)
        filed.append(raw)

    with ImapMailbox.connect(account, password) as box:
        result = enrol(address=account.email, acme=acme, box=box, send=send_and_file, vault=vault,
                       key_type="p256", timeouts=Timeouts(mail=30, early_post_after=10, validation=30))
    assert result.cert is not None and len(filed) == 1
    with ImapMailbox.connect(account, password) as box:
        assert box.search_header("Sent", "Subject", "ACME:") == []
        assert box.search_header("INBOX", "Subject", "ACME:") == []
