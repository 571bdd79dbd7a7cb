"""Harvesting from verified mail (only the From-matching signer), and the lookup order with its cache."""

from __future__ import annotations

import datetime as _dt

import pytest

from autosmime import smime
from autosmime.errors import NoKey, NoRecipientCertificate, RecipientNotFound
from autosmime.exchange.client import DirectoryClient
from autosmime.exchange.contacts import Contacts
from autosmime.exchange.harvest import harvest
from autosmime.exchange.lookup import find_certificate
from autosmime.exchange.transparency import LogWitness
from autosmime.pki.certs import fingerprint
from tests.exchange.conftest import publish_fast


def mail(sender: str) -> bytes:
    return (f"From: <{sender}>\r\nTo: <me@example.test>\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain\r\n\r\nhello\r\n").encode()


def test_harvest_takes_the_from_signer_only(pki, tmp_path):
    alice = pki.user("alice@example.test")
    signed = smime.sign(mail("alice@example.test"), alice.key, alice.cert)
    contacts = Contacts(tmp_path)
    result = smime.read(signed, trust_roots=[pki.ca])
    [h] = harvest(result, contacts)
    assert (h.address, h.outcome) == ("alice@example.test", "new")
    assert harvest(smime.verify(signed, [pki.ca]), contacts)[0].outcome == "known"
    # Someone else's signature on a mail from mallory: the signer does not match From, nothing is learnt.
    mallory_mail = smime.sign(mail("mallory@example.test"), alice.key, alice.cert)
    result = smime.read(mallory_mail, trust_roots=[pki.ca], require_from_match=False)
    assert harvest(result, contacts) == []
    assert Contacts(tmp_path).certificates("mallory@example.test") == []


def test_newer_harvested_certificate_is_reported_not_preferred(pki, tmp_path):
    now = _dt.datetime.now(_dt.UTC)
    old = pki.user("alice@example.test", not_before=now - _dt.timedelta(days=2))
    new = pki.user("alice@example.test", not_before=now - _dt.timedelta(days=1))
    contacts = Contacts(tmp_path)
    harvest(smime.verify(smime.sign(mail(old.address), old.key, old.cert), [pki.ca]), contacts)
    [h] = harvest(smime.verify(smime.sign(mail(new.address), new.key, new.cert), [pki.ca]), contacts)
    assert h.outcome == "changed"
    found = find_certificate("alice@example.test", contacts, [pki.ca])
    assert found.cert == old.cert and any("held back" in n for n in found.notes)
    contacts.accept("alice@example.test", fingerprint(new.cert))
    assert find_certificate("alice@example.test", contacts, [pki.ca]).cert == new.cert  # newest once accepted


def test_lookup_order_and_cache(directory, pki, tmp_path):
    bob = publish_fast(directory.url, pki, "bob@example.test")
    contacts = Contacts(tmp_path)
    calls = []

    def open_witness():
        calls.append(1)
        return LogWitness.open(tmp_path, DirectoryClient(directory.url))

    found = find_certificate("bob@example.test", contacts, [pki.fast_ca], directory=open_witness, now=1_000)
    assert found.source == "directory" and found.cert == bob.cert and len(calls) == 1
    # Within the TTL: from the contacts, no directory.
    found = find_certificate("bob@example.test", contacts, [pki.fast_ca], directory=open_witness, now=2_000)
    assert found.source == "contacts" and len(calls) == 1
    # Not published: RecipientNotFound (exit 3), and the "none" is cached too.
    with pytest.raises(RecipientNotFound) as e:
        find_certificate("nobody@example.test", contacts, [pki.fast_ca], directory=open_witness, now=1_000)
    assert e.value.exit_code == 3 and e.value.reasons == ["directory: nothing published for nobody@example.test"]
    with pytest.raises(RecipientNotFound) as e:
        find_certificate("nobody@example.test", contacts, [pki.fast_ca], directory=open_witness, now=1_500)
    assert len(calls) == 2
    # ... and it says so, as the first answer did (not a bare "no usable certificate", send's "none found")
    assert e.value.reasons == ["directory: nothing published for nobody@example.test (its answer of "
                               "1970-01-01T00:16:40Z, kept for 6 h)"]
    # A harvested certificate comes first, without asking the directory.
    carol = pki.user("carol@example.test")
    harvest(smime.verify(smime.sign(mail(carol.address), carol.key, carol.cert), [pki.ca]), contacts)
    assert find_certificate("carol@example.test", contacts, [pki.ca], directory=open_witness).source == "contacts"
    assert len(calls) == 2


def test_untrusted_or_unusable_certificates_are_not_chosen(pki, tmp_path):
    contacts = Contacts(tmp_path)
    evil = pki.user("dave@example.test", issuer="evil")
    contacts.add("dave@example.test", evil.cert, source="manual")
    with pytest.raises(NoKey, match="dave@example.test") as e:
        find_certificate("dave@example.test", contacts, [pki.ca])
    # Found but unusable is not "not found": exit 1, with the contacts' reason.
    assert not isinstance(e.value, RecipientNotFound) and e.value.exit_code == 1
    assert isinstance(e.value, NoRecipientCertificate) and e.value.reasons[0].startswith("contacts: ")


def test_a_signature_that_is_not_good_teaches_nothing(pki, tmp_path):
    evil = pki.user("erin@example.test", issuer="evil")
    signed = smime.sign(mail("erin@example.test"), evil.key, evil.cert)
    result = smime.read(signed, trust_roots=[pki.ca])   # read reports the verdict instead of raising
    assert result.signatures[0].verdict != "good"
    assert harvest(result, Contacts(tmp_path)) == []
    assert Contacts(tmp_path).certificates("erin@example.test") == []


def test_an_unreadable_contacts_file_is_a_typed_error_and_one_line(tmp_path):
    """Not an internal error (JSONDecodeError) in every send, inbox and read: the file is named, with what to do."""
    import subprocess
    import sys

    from autosmime.errors import ContactsError

    (tmp_path / "contacts.json").write_text("x")
    with pytest.raises(ContactsError, match="contacts.json"):
        Contacts(tmp_path).certificates("bob@example.test")
    r = subprocess.run([sys.executable, "-m", "autosmime", "--home", str(tmp_path), "lookup", "bob@example.test"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and r.stdout == "" and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("autosmime: error: ") and "contacts.json" in r.stderr


def test_without_a_directory_the_reason_says_so(tmp_path):
    """A device that knows no directory (e.g. set up from the backup without --directory): send's warning says
    why nothing was found, instead of "none found"."""
    with pytest.raises(RecipientNotFound) as e:
        find_certificate("bob@example.test", Contacts(tmp_path), [])
    assert e.value.reasons == ["directory: none in use (`autosmime publish --directory URL` sets one)"]
