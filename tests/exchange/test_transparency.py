"""The client checks every directory answer against the log: tampering is reported, never used."""

from __future__ import annotations

import base64

import pytest

from autosmime.errors import CertificateSwapped, LogForked, LogVerificationError
from autosmime.exchange.client import DirectoryClient
from autosmime.exchange.transparency import LogWitness
from tests.exchange.conftest import Tamper, publish_fast, start_directory
from tests.servers.directory import support


def der_b64(user) -> str:
    return base64.b64encode(user.cert.public_bytes(support.serialization.Encoding.DER)).decode()


def test_honest_answers_verify_and_the_checkpoint_grows(directory, pki, tmp_path):
    bob = publish_fast(directory.url, pki, "bob@example.test")
    with DirectoryClient(directory.url) as client:
        witness = LogWitness.open(tmp_path / "home", client)
        answer, _ = client.lookup("bob@example.test")
        [proven] = witness.verify_lookup("bob@example.test", answer)
        assert proven.cert == bob.cert and witness.size == 1
        for i in range(4):
            publish_fast(directory.url, pki, f"more{i}@example.test")
        answer, _ = client.lookup("bob@example.test")
        witness.verify_lookup("bob@example.test", answer)
        assert witness.size == 5
    # A new process sees what the last one stored.
    with DirectoryClient(directory.url) as client:
        assert LogWitness.open(tmp_path / "home", client).size == 5


def test_swapped_certificate_is_detected(directory, pki, tmp_path):
    publish_fast(directory.url, pki, "bob@example.test")
    mallory = pki.user("bob@example.test", issuer="fast")   # a valid cert for bob, never published

    def swap(path, data):
        if "by-email" in path:
            data["certificates"][0]["der_b64"] = der_b64(mallory)
        return data

    with DirectoryClient(directory.url, transport=Tamper(directory.url, swap)) as client:
        witness = LogWitness.open(tmp_path / "home", client)
        answer, _ = client.lookup("bob@example.test")
        with pytest.raises(CertificateSwapped):
            witness.verify_lookup("bob@example.test", answer)


def test_another_addresses_proven_leaf_does_not_pass(directory, pki, tmp_path):
    publish_fast(directory.url, pki, "bob@example.test")
    publish_fast(directory.url, pki, "mallory@example.test")
    with DirectoryClient(directory.url) as client:
        mallory_answer, _ = client.lookup("mallory@example.test")

    def swap(path, data):
        if "by-email/bob" in path:
            data["certificates"] = mallory_answer["certificates"]   # a genuine, proven entry, for someone else
        return data

    with DirectoryClient(directory.url, transport=Tamper(directory.url, swap)) as client:
        witness = LogWitness.open(tmp_path / "home", client)
        answer, _ = client.lookup("bob@example.test")
        with pytest.raises(CertificateSwapped):
            witness.verify_lookup("bob@example.test", answer)


def test_bad_inclusion_proof_is_detected(directory, pki, tmp_path):
    for name in ("bob", "carol", "dave"):
        publish_fast(directory.url, pki, f"{name}@example.test")

    def corrupt(path, data):
        if "by-email" in path:
            proof = data["certificates"][0]["inclusion"]
            proof[0] = base64.b64encode(bytes(32)).decode()
        return data

    with DirectoryClient(directory.url, transport=Tamper(directory.url, corrupt)) as client:
        witness = LogWitness.open(tmp_path / "home", client)
        answer, _ = client.lookup("bob@example.test")
        with pytest.raises(LogVerificationError):
            witness.verify_lookup("bob@example.test", answer)


def test_forged_checkpoint_signature_is_detected(directory, pki, tmp_path):
    publish_fast(directory.url, pki, "bob@example.test")

    def forge(path, data):
        if "by-email" in path:
            lines = data["checkpoint"].split("\n")
            lines[2] = base64.b64encode(bytes(32)).decode()
            data["checkpoint"] = "\n".join(lines)
        return data

    with DirectoryClient(directory.url, transport=Tamper(directory.url, forge)) as client:
        witness = LogWitness.open(tmp_path / "home", client)
        answer, _ = client.lookup("bob@example.test")
        with pytest.raises(LogVerificationError):
            witness.verify_lookup("bob@example.test", answer)


def test_forked_log_is_detected(directory, pki, tmp_path):
    """The operator signs a second history with the same key and shows it to this client: reported, not used."""
    for name in ("bob", "carol"):
        publish_fast(directory.url, pki, f"{name}@example.test")
    home = tmp_path / "home"
    with DirectoryClient(directory.url) as client:
        witness = LogWitness.open(home, client)
        witness.refresh()
        assert witness.size == 2
    fork = start_directory(pki, tmp_path, "fork")
    try:
        for name in ("bob", "mallory", "erin"):
            publish_fast(fork.url, pki, f"{name}@example.test")
        # Same URL as far as the client knows, the fork's answers behind it.
        with DirectoryClient(directory.url, transport=Tamper(fork.url)) as client:
            witness = LogWitness.open(home, client)
            answer, _ = client.lookup("bob@example.test")
            with pytest.raises(LogForked):
                witness.verify_lookup("bob@example.test", answer)
            assert witness.size == 2   # the stored checkpoint is untouched
    finally:
        fork.stop()


def test_rolled_back_checkpoint_is_detected(directory, pki, tmp_path):
    """The client saw size 4; an answer against a smaller tree that is not a prefix of it is a rewritten history."""
    for i in range(4):
        publish_fast(directory.url, pki, f"user{i}@example.test")
    home = tmp_path / "home"
    with DirectoryClient(directory.url) as client:
        LogWitness.open(home, client).refresh()
    fork = start_directory(pki, tmp_path, "rollback")
    try:
        publish_fast(fork.url, pki, "bob@example.test")
        # The rolled-back log's consistency proofs come from the genuine server, which cannot vouch for it.
        def route(path, data):
            return data

        with DirectoryClient(directory.url, transport=Tamper(fork.url, route)) as client:
            witness = LogWitness.open(home, client)
            answer, _ = client.lookup("bob@example.test")
        with DirectoryClient(directory.url) as client:
            witness = LogWitness.open(home, client)
            with pytest.raises(LogForked):
                witness.verify_lookup("bob@example.test", answer)
            assert witness.size == 4
        # An honest older checkpoint (a prefix of what was seen) is still accepted.
        with DirectoryClient(directory.url) as client:
            witness = LogWitness.open(home, client)
            old = client.consistency(1, 2)["checkpoint"]
            assert witness.accept_checkpoint(old).size == 2 and witness.size == 4
    finally:
        fork.stop()
