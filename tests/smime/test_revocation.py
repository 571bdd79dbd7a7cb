"""A signer's revocation status (docs/engine.md, "Revocation"): the rule, the engine's hook, the CRL checker.

The engine asks a checker only when one is given, only for the signer that counts and only once
everything else is good; the checker here is either injected (the rule) or pki's CrlChecker reading a
CRL built with cryptography's CertificateRevocationListBuilder from a loopback HTTP server.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.server
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from autosmime.errors import BadDigest, RevokedSigner, UntrustedSigner
from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from autosmime.pki.revocation import CrlChecker, RevocationStatus
from autosmime.smime import read, sign, verify

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
HOUR = dt.timedelta(hours=1)


class Calls:
    """An injected checker that answers ``status`` and records what it was asked."""

    def __init__(self, status: RevocationStatus) -> None:
        self.status, self.asked = status, []

    def __call__(self, cert: x509.Certificate, chain: Sequence[x509.Certificate]) -> RevocationStatus:
        self.asked.append((cert, tuple(chain)))
        return self.status


def _message(date: dt.datetime | None = NOW, sender: str = "alice@example.test") -> bytes:
    head = [f"From: Alice <{sender}>", "To: bob@example.test", "Subject: revocation"]
    if date is not None:
        head.append(f"Date: {email.utils.format_datetime(date)}")
    return ("\r\n".join([*head, "Content-Type: text/plain", "", "Hello Bob", ""])).encode()


class Served:
    """A CRL on a loopback HTTP server (``body`` replaceable); ``hits`` counts the fetches."""

    def __init__(self) -> None:
        self.body, self.hits = b"", 0
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.hits += 1
                if not served.body:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(served.body)))
                self.end_headers()
                self.wfile.write(served.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/crl/issuing.crl"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    s = Served()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(scope="module")
def pki(served: Served) -> dict:
    ca_key, ca = make_ca("Revocation Test Root", new_key("ec"))
    alice_key = new_key("ec")
    plain = make_mailbox_cert("alice@example.test", alice_key.public_key(), ca_key, ca)
    # The same key and name, with a CRL distribution point on the loopback server.
    with_dp = x509.CertificateBuilder(
        issuer_name=plain.issuer, subject_name=plain.subject, public_key=plain.public_key(),
        serial_number=x509.random_serial_number(), not_valid_before=plain.not_valid_before_utc,
        not_valid_after=plain.not_valid_after_utc, extensions=list(plain.extensions),
    ).add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(served.url)], relative_name=None, reasons=None,
        crl_issuer=None)]), critical=False).sign(ca_key, hashes.SHA256())
    other_key, other = make_ca("Some Other Root", new_key("ec"))
    return {"ca_key": ca_key, "ca": ca, "key": alice_key, "cert": plain, "with_dp": with_dp,
            "other_key": other_key, "other": other}


def _crl(pki: dict, revoked: Sequence[tuple[x509.Certificate, dt.datetime, x509.ReasonFlags | None]],
         signer_key: object = None, next_update: dt.timedelta = dt.timedelta(days=7)) -> bytes:
    from cryptography.hazmat.primitives import serialization

    builder = (x509.CertificateRevocationListBuilder().issuer_name(pki["ca"].subject)
               .last_update(NOW - HOUR).next_update(NOW + next_update))
    for cert, when, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(when)
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(signer_key or pki["ca_key"], hashes.SHA256())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.DER)


# -- the rule, through an injected checker ------------------------------------------------------

def test_key_compromise_is_revoked_whatever_the_signing_time(pki: dict) -> None:
    signed = sign(_message(), pki["key"], pki["cert"])
    # Revoked an hour *after* the claimed signing time: a compromised key can claim any time.
    check = Calls(RevocationStatus("revoked", NOW + HOUR, "keyCompromise"))
    with pytest.raises(RevokedSigner, match="keyCompromise"):
        verify(signed, [pki["ca"]], revocation=check)
    assert check.asked == [(pki["cert"], (pki["cert"], pki["ca"]))]  # the validated chain, leaf..root
    opened = read(signed, trust_roots=[pki["ca"]], revocation=check)
    assert opened.verdict == "revoked" and opened.exit_code == 1 and opened.message is not None
    assert opened.summary == "signed by alice@example.test (revoked)"
    [layer] = [x for x in opened.to_json()["layers"] if x["kind"] == "clear-signed"]
    assert layer["verdict"] == "revoked" and "keyCompromise" in layer["detail"]
    assert layer["signers"][0]["revocation"]["status"] == "revoked"
    assert layer["signers"][0]["revocation"]["reason"] == "keyCompromise"


@pytest.mark.parametrize("reason", [None, "unspecified", "certificateHold", "cACompromise"])
def test_no_reason_or_a_reason_that_may_be_a_compromise_is_revoked(pki: dict, reason: str | None) -> None:
    signed = sign(_message(), pki["key"], pki["cert"])
    check = Calls(RevocationStatus("revoked", NOW + HOUR, reason))
    assert read(signed, trust_roots=[pki["ca"]], revocation=check).verdict == "revoked"


@pytest.mark.parametrize("reason", ["superseded", "cessationOfOperation", "affiliationChanged"])
def test_superseded_after_signing_stays_good_with_a_note(pki: dict, reason: str) -> None:
    signed = sign(_message(), pki["key"], pki["cert"])
    check = Calls(RevocationStatus("revoked", NOW + HOUR, reason))
    result = verify(signed, [pki["ca"]], revocation=check)
    assert result.verdict == "good"
    note = f"the certificate was revoked on {(NOW + HOUR).isoformat()} ({reason}), after this message was signed"
    assert result.revocation_note == note and note in result.signers[0].notes
    opened = read(signed, trust_roots=[pki["ca"]], revocation=check)
    assert opened.verdict == "good" and opened.exit_code == 0
    assert opened.summary == f"signed by alice@example.test (good; {note})"
    [layer] = [x for x in opened.to_json()["layers"] if x["kind"] == "clear-signed"]
    assert note in layer["detail"] and note in layer["signers"][0]["notes"]
    assert layer["signers"][0]["revocation"]["reason"] == reason


def test_superseded_at_or_before_signing_is_revoked(pki: dict) -> None:
    signed = sign(_message(), pki["key"], pki["cert"])
    for when in (NOW - HOUR, verify(signed, [pki["ca"]]).signing_time):
        with pytest.raises(RevokedSigner, match="superseded"):
            verify(signed, [pki["ca"]], revocation=Calls(RevocationStatus("revoked", when, "superseded")))


def test_without_signing_time_the_date_header_counts_and_without_either_revoked(pki: dict) -> None:
    from autosmime.smime.verify import revocation_judgement

    later = RevocationStatus("revoked", NOW + HOUR, "superseded")
    assert revocation_judgement(later, NOW)[0] is None
    assert isinstance(revocation_judgement(later, None)[0], RevokedSigner)
    # Through the engine: the signingTime stripped is what the Date header stands in for.
    from autosmime.smime.verify import HeaderBlock, _revocation

    report = verify(sign(_message(), pki["key"], pki["cert"]), [pki["ca"]]).signers[0]
    from dataclasses import replace

    untimed = replace(report, signing_time=None)
    dated = HeaderBlock([f"Date: {email.utils.format_datetime(NOW)}\r\n".encode()])
    assert _revocation(untimed, Calls(later), dated)[1] is None
    assert isinstance(_revocation(untimed, Calls(later), HeaderBlock([]))[1], RevokedSigner)


def test_unknown_leaves_the_verdict_with_a_note(pki: dict) -> None:
    signed = sign(_message(), pki["key"], pki["cert"])
    check = Calls(RevocationStatus("unknown", detail="its CRL could not be fetched"))
    result = verify(signed, [pki["ca"]], revocation=check)
    assert result.verdict == "good" and "could not be checked: its CRL could not be fetched" in result.revocation_note
    opened = read(signed, trust_roots=[pki["ca"]], revocation=check)
    assert opened.verdict == "good" and "revocation status could not be checked" in opened.summary


def test_the_checker_is_not_asked_about_a_bad_signature_or_an_untrusted_chain(pki: dict) -> None:
    check = Calls(RevocationStatus("revoked", NOW - HOUR, "keyCompromise"))
    signed = sign(_message(), pki["key"], pki["cert"])
    with pytest.raises(BadDigest):
        verify(signed.replace(b"Hello Bob", b"Hello Rob"), [pki["ca"]], revocation=check)
    with pytest.raises(UntrustedSigner) as e:
        verify(signed, [pki["other"]], revocation=check)
    assert not isinstance(e.value, RevokedSigner)
    assert read(signed, trust_roots=[pki["other"]], revocation=check).verdict == "untrusted"
    assert check.asked == []


def test_without_a_checker_nothing_is_asked_and_the_result_is_as_before(pki: dict) -> None:
    signed = sign(_message(), pki["key"], pki["cert"])
    plain, checked = read(signed, trust_roots=[pki["ca"]]), read(signed, trust_roots=[pki["ca"]], revocation=None)
    assert plain.to_json() == checked.to_json()
    assert plain.summary == "signed by alice@example.test (good)"
    assert plain.to_json()["layers"][0]["signers"][0]["revocation"] is None
    good = Calls(RevocationStatus("good"))
    with_good = read(signed, trust_roots=[pki["ca"]], revocation=good)
    assert with_good.summary == plain.summary and len(good.asked) == 1
    assert with_good.to_json()["layers"][0]["signers"][0]["revocation"] == {
        "status": "good", "reason": None, "revoked_at": None}


# -- pki's CRL checker, on a loopback server ---------------------------------------------------------

def test_crl_checker_reads_the_reason_and_date_from_the_issuers_crl(pki: dict, served: Served,
                                                                    tmp_path: Path) -> None:
    cert = pki["with_dp"]
    signed = sign(_message(), pki["key"], cert)
    revoked_at = NOW - dt.timedelta(minutes=5)
    served.body, served.hits = _crl(pki, [(cert, revoked_at, x509.ReasonFlags.key_compromise)]), 0
    status = CrlChecker()(cert, [cert, pki["ca"]])
    assert status == RevocationStatus("revoked", revoked_at, "keyCompromise")
    opened = read(signed, trust_roots=[pki["ca"]], revocation=CrlChecker())
    assert opened.verdict == "revoked" and opened.exit_code == 1

    # Superseded after the signing: good with the note.
    later = NOW + dt.timedelta(minutes=5)
    served.body = _crl(pki, [(cert, later, x509.ReasonFlags.superseded)])
    opened = read(signed, trust_roots=[pki["ca"]], revocation=CrlChecker())
    assert opened.verdict == "good" and "(superseded), after this message was signed" in opened.summary
    # Superseded before: revoked.
    served.body = _crl(pki, [(cert, NOW - HOUR, x509.ReasonFlags.superseded)])
    assert read(signed, trust_roots=[pki["ca"]], revocation=CrlChecker()).verdict == "revoked"
    # Not on the CRL: good, no note.
    served.body = _crl(pki, [])
    opened = read(signed, trust_roots=[pki["ca"]], revocation=CrlChecker())
    assert opened.summary == "signed by alice@example.test (good)"


def test_crl_checker_says_unknown_on_missing_data(pki: dict, served: Served) -> None:
    cert = pki["with_dp"]
    chain = [cert, pki["ca"]]
    revoked = [(cert, NOW - HOUR, x509.ReasonFlags.key_compromise)]
    served.body = b""  # 404
    assert CrlChecker()(cert, chain).status == "unknown"
    served.body = _crl(pki, revoked, signer_key=pki["other_key"])  # not the issuer's signature
    assert CrlChecker()(cert, chain).status == "unknown"
    served.body = _crl(pki, revoked, next_update=-dt.timedelta(minutes=1))  # stale
    assert CrlChecker()(cert, chain).status == "unknown"
    assert CrlChecker()(pki["cert"], [pki["cert"], pki["ca"]]).detail.startswith("the certificate names no CRL")
    opened = read(sign(_message(), pki["key"], cert), trust_roots=[pki["ca"]], revocation=CrlChecker())
    assert opened.verdict == "good" and "revocation status could not be checked" in opened.summary


def test_crl_checker_fetches_once_per_run_and_caches_until_next_update(pki: dict, served: Served,
                                                                       tmp_path: Path) -> None:
    cert = pki["with_dp"]
    chain = [cert, pki["ca"]]
    served.body, served.hits = _crl(pki, []), 0
    check = CrlChecker(tmp_path / "crl")
    assert [check(cert, chain).status for _ in range(3)] == ["good"] * 3 and served.hits == 1
    [cached] = (tmp_path / "crl").iterdir()
    assert cached.name.endswith(".der") and cached.stat().st_mode & 0o777 == 0o600
    # The next run within the hour reads the cache: the revocation published since is not seen yet.
    served.body = _crl(pki, [(cert, NOW, x509.ReasonFlags.key_compromise)])
    assert CrlChecker(tmp_path / "crl")(cert, chain).status == "good" and served.hits == 1
    assert CrlChecker()(cert, chain).status == "revoked" and served.hits == 2
    # A kept copy fetched over an hour ago is fetched again, though its nextUpdate is days away.
    two_hours_ago = time.time() - 7200
    os.utime(cached, (two_hours_ago, two_hours_ago))
    assert CrlChecker(tmp_path / "crl")(cert, chain).status == "revoked" and served.hits == 3
    # Offline, an old kept copy still serves until its nextUpdate (here: the one with the revocation).
    os.utime(cached, (two_hours_ago, two_hours_ago))
    served.body = b""
    assert CrlChecker(tmp_path / "crl")(cert, chain).status == "revoked" and served.hits == 4
    served.body = _crl(pki, [(cert, NOW, x509.ReasonFlags.key_compromise)])
    # A cached CRL past its nextUpdate is fetched again.
    cached.write_bytes(_crl(pki, [], next_update=-dt.timedelta(minutes=1)))
    assert CrlChecker(tmp_path / "crl")(cert, chain).status == "revoked" and served.hits == 5
    # A CRL the issuer did not sign is never cached.
    served.body = _crl(pki, [], signer_key=pki["other_key"])
    cached.unlink()
    assert CrlChecker(tmp_path / "crl")(cert, chain).status == "unknown"
    assert list((tmp_path / "crl").iterdir()) == []


# -- the file commands: offline unless --check-revocation ------------------------------------------

def _cli(home: Path, *args: object, stdin: bytes) -> tuple[int, bytes, str]:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), *map(str, args)], input=stdin,
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode()


def test_file_commands_check_revocation_only_when_asked(pki: dict, served: Served, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    cert = pki["with_dp"]
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki["ca"].public_bytes(serialization.Encoding.PEM))
    signed = sign(_message(), pki["key"], cert)
    served.body = _crl(pki, [(cert, NOW - HOUR, x509.ReasonFlags.key_compromise)])
    served.hits = 0
    home = tmp_path / "home"  # not set up: nothing is cached, no home is created
    rc, _, err = _cli(home, "read", "--trust", ca, stdin=signed)
    assert rc == 0 and err == "autosmime: signed by alice@example.test (good)\n" and served.hits == 0
    rc, out, err = _cli(home, "read", "--trust", ca, "--check-revocation", stdin=signed)
    assert rc == 1 and b"Hello Bob" in out and err == "autosmime: signed by alice@example.test (revoked)\n"
    rc, out, err = _cli(home, "verify", "--trust", ca, stdin=signed)
    assert rc == 0
    rc, out, err = _cli(home, "verify", "--trust", ca, "--check-revocation", stdin=signed)
    assert rc == 1 and out == b"" and len(err.strip().splitlines()) == 1 and "(keyCompromise)" in err, err
    assert served.hits == 2 and not home.exists()

    served.body = _crl(pki, [(cert, NOW + HOUR, x509.ReasonFlags.superseded)])
    rc, out, err = _cli(home, "verify", "--trust", ca, "--check-revocation", "--json", stdin=signed)
    assert rc == 0, err
    import json

    doc = json.loads(out)
    assert doc["verdict"] == "good" and any("(superseded), after this message was signed" in n for n in doc["notes"])
    rc, out, err = _cli(home, "verify", "--trust", ca, "--check-revocation", stdin=signed)
    assert rc == 0 and "(superseded), after this message was signed" in err
