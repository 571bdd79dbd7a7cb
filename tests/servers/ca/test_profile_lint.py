"""pkilint (CA/B Forum S/MIME linter, pkilint.cabf.smime) reports zero errors on every profile the CA issues.

Certificates are issued through the running server (real HTTP, real DKIM
reply over SMTP) with a public base URL and a public mail domain, as a
deployment would have: on loopback or with ``.test`` names pkilint adds only
``cabf.internal_domain_name`` for those names, which says nothing about the
profile. Profiles: RSA 2048/3072/4096 and ECDSA P-256/P-384 dual use,
signing only and encryption only (from the CSR's keyUsage), two addresses.
The CRL is linted with the CA/B Forum CRL profile too.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from autosmime.servers.ca.profile import MAILBOX_STRICT_OID
from tests.servers.ca.conftest import CA, Pending, start_ca
from tests.servers.ca.support import ACMETestClient, MailProvider, MailSink, b64url, challenge_fields

BASE_URL = "http://acme.example.com"


@pytest.fixture(scope="module")
def public_ca(ca_dir: Path, tmp_path_factory: pytest.TempPathFactory, sink: MailSink) -> Iterator[CA]:
    provider = MailProvider(domain="example.com")
    zone = tmp_path_factory.mktemp("lintzone") / "zone"
    zone.write_text(provider.zone)
    db = f"sqlite:///{tmp_path_factory.mktemp('lintdb') / 'ca.db'}"
    env = start_ca(ca_dir, db, sink, provider, zone, base_url=BASE_URL)
    yield env
    env.server.stop()


def _csr(key: Any, addresses: list[str], usage: str) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, addresses[0])])).add_extension(
        x509.SubjectAlternativeName([x509.RFC822Name(a) for a in addresses]), critical=False)
    if usage != "dual":
        is_ec = isinstance(key, ec.EllipticCurvePrivateKey)
        enc = usage == "encrypt"
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=not enc, content_commitment=False, key_encipherment=enc and not is_ec,
            data_encipherment=False, key_agreement=enc and is_ec, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _issue(ca: CA, key: Any, usage: str = "dual", n_addresses: int = 1,
           client: ACMETestClient | None = None) -> x509.Certificate:
    client = client or ca.client()
    addresses = [f"lint{i}-{id(key) % 100000}@example.com" for i in range(n_addresses)]
    r = client.new_order(*addresses)
    assert r.status_code == 201, r.text
    order = r.json()
    for authz_url in order["authorizations"]:
        authz = client.authz(authz_url)
        address = authz["identifier"]["value"]
        raw = ca.sink.find(address)
        assert raw is not None
        p = challenge_fields(raw)
        pending = Pending(client, address, r.headers["Location"], order, authz_url, authz["challenges"][0],
                          p[0], p[1], p[2])
        pending.reply(ca)
        pending.post_challenge()
    fin = client.post(order["finalize"], {"csr": b64url(_csr(key, addresses, usage))})
    assert fin.status_code == 200, fin.text
    pem = client.post(fin.json()["certificate"]).content
    return x509.load_pem_x509_certificates(pem)[0]


def _findings(cert: x509.Certificate) -> list[tuple[str, str, str]]:
    from pkilint import loader
    from pkilint.cabf import smime
    from pkilint.pkix import certificate

    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(
        cert.public_bytes(serialization.Encoding.DER), "leaf")
    level_generation = smime.determine_validation_level_and_generation(doc)
    assert level_generation is not None
    assert (level_generation[0].name, level_generation[1].name) == ("MAILBOX", "STRICT")
    validator = certificate.create_pkix_certificate_validator_container(
        smime.create_decoding_validators(), smime.create_subscriber_validators(*level_generation))
    return [(f.finding.severity.name, f.finding.code, str(f.message))
            for result in validator.validate(doc.root) for f in result.finding_descriptions]


PROFILES = [
    ("rsa2048", lambda: rsa.generate_private_key(65537, 2048), "dual", 1),
    ("rsa3072", lambda: rsa.generate_private_key(65537, 3072), "dual", 1),
    ("rsa4096", lambda: rsa.generate_private_key(65537, 4096), "dual", 1),
    ("p256", lambda: ec.generate_private_key(ec.SECP256R1()), "dual", 1),
    ("p384", lambda: ec.generate_private_key(ec.SECP384R1()), "dual", 1),
    ("rsa-sign", lambda: rsa.generate_private_key(65537, 2048), "sign", 1),
    ("rsa-encrypt", lambda: rsa.generate_private_key(65537, 2048), "encrypt", 1),
    ("p256-sign", lambda: ec.generate_private_key(ec.SECP256R1()), "sign", 1),
    ("p256-encrypt", lambda: ec.generate_private_key(ec.SECP256R1()), "encrypt", 1),
    ("two-addresses", lambda: ec.generate_private_key(ec.SECP256R1()), "dual", 2),
]


@pytest.mark.parametrize("name,make_key,usage,n", PROFILES, ids=[p[0] for p in PROFILES])
def test_pkilint_zero_errors(public_ca: CA, name: str, make_key: Any, usage: str, n: int) -> None:
    cert = _issue(public_ca, make_key(), usage, n)
    findings = _findings(cert)
    bad = [f for f in findings if f[0] in ("FATAL", "ERROR", "WARNING")]
    assert bad == [], bad
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier for p in policies] == [MAILBOX_STRICT_OID]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature == (usage != "encrypt")
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert days == 365


def test_crl_lints_clean_and_lists_revocations(public_ca: CA, tmp_path: Path) -> None:
    client = public_ca.client()
    cert = _issue(public_ca, ec.generate_private_key(ec.SECP256R1()), client=client)
    crl_url = public_ca.server.url + "/crl/issuing.crl"
    before = x509.load_der_x509_crl(httpx.get(crl_url).content)
    assert before.get_revoked_certificate_by_serial_number(cert.serial_number) is None
    der = cert.public_bytes(serialization.Encoding.DER)
    r = client.post(client.directory["revokeCert"], {"certificate": b64url(der), "reason": 4})
    assert r.status_code == 200, r.text
    crl_der = httpx.get(crl_url).content
    after = x509.load_der_x509_crl(crl_der)
    entry = after.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.superseded
    assert after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > \
        before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert after.is_signature_valid(public_ca.server.authority.issuing_cert.public_key())  # type: ignore[arg-type]
    path = tmp_path / "issuing.crl"
    path.write_bytes(crl_der)
    out = subprocess.run([sys.executable, "-m", "pkilint.bin.lint_crl", "lint", "-t", "CRL", "-p", "BR",
                          "-s", "WARNING", "--document-format", "DER", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_prelint_finds_a_broken_profile(ca_dir: Path) -> None:
    from autosmime.servers.ca.authority import Authority
    from autosmime.servers.ca.profile import PreIssuanceLinter

    authority = Authority.open(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
               .issuer_name(authority.issuing_cert.subject).public_key(key).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=900))
               .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("a@example.com"),
                                                           x509.DNSName("example.com")]), critical=False))
    assert PreIssuanceLinter().findings(builder, authority.issuing_key)      # several ERRORs


def test_prelint_failure_issues_nothing(ca: CA) -> None:
    from tests.servers.ca.conftest import start_order
    from tests.servers.ca.support import make_csr

    class Refusing:
        def findings(self, builder: Any, ca_key: Any) -> list[str]:
            return ["test.refused"]

    ca.server.service.linter = Refusing()  # type: ignore[assignment]
    p = start_order(ca)
    p.reply(ca)
    p.post_challenge()
    r = p.finalize(make_csr(ec.generate_private_key(ec.SECP256R1()), p.address))
    assert r.status_code == 500 and "pre-issuance lint" in r.json()["detail"]
    assert ca.certificates_issued() == 0


@pytest.mark.parametrize("name", ["ca.pem", "issuing.pem"])
def test_ca_certificates_lint_clean_as_pkix(ca_dir: Path, name: str) -> None:
    # pkilint has no S/MIME linter for CA certificates; its RFC 5280 linter is the check that exists
    out = subprocess.run([sys.executable, "-m", "pkilint.bin.lint_pkix_cert", "lint", "-s", "WARNING",
                          str(ca_dir / name)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr
