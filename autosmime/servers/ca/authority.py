"""The CA's own keys and certificates: ``ca init`` makes them, ``ca serve`` opens them.

    >>> import tempfile, os; from pathlib import Path
    >>> from autosmime.servers.ca.authority import Authority
    >>> d = Path(tempfile.mkdtemp()) / "ca"
    >>> ca = Authority.init(d, name="Doc Mail CA", domain="example.test")
    >>> sorted(p.name for p in d.iterdir())[:4]
    ['ca.json', 'ca.pem', 'chain.pem', 'dkim-key.pem']
    >>> Authority.open(d).issuing_cert.subject.rfc4514_string()
    'CN=Doc Mail CA Issuing CA'

Layout of DIR (every key file is 0600 and encrypted, PKCS#8 with the CA
passphrase, ``BestAvailableEncryption``):

- ``ca.pem``: the root certificate, what users trust (``--ca-trust``);
- ``root-key.pem``: the root key, needed only to re-issue the issuing CA;
- ``issuing.pem`` / ``issuing-key.pem``: the issuing CA that signs mailbox
  certificates and CRLs; ``chain.pem`` = issuing + root;
- ``dkim-key.pem``: the RSA-2048 key that DKIM-signs challenge mails for
  ``--domain`` (selector in ``ca.json``);
- ``dns.zone``: the TXT record publishing that DKIM key (RFC 1035 master
  format, absolute names; see :mod:`autosmime.servers.ca.dns`), for a stack to
  merge into its zone;
- ``ca.json``: name, domain, DKIM selector, the challenge mails' From address,
  default validity;
- ``passphrase``: the key passphrase, 0600 — written only when
  ``$AUTOSMIME_CA_PASSPHRASE`` was not set at ``init``. When that variable is
  set it is the passphrase (at init and at every serve) and nothing secret
  but the encrypted keys is on disk.

Root and issuing CA keys are ECDSA P-384 (signatures ECDSA-SHA384).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from autosmime._files import write_private
from autosmime.errors import CADirError, WrongPassword
from autosmime.servers.ca.dns import dkim_txt_record

PASSPHRASE_ENV = "AUTOSMIME_CA_PASSPHRASE"
CONFIG_FILE = "ca.json"


@dataclass(frozen=True)
class Authority:
    """An opened CA directory: what issuance, CRLs and the challenge mailer need."""

    directory: Path
    name: str
    domain: str
    mail_from: str
    dkim_selector: str
    dkim_key: rsa.RSAPrivateKey
    root_cert: x509.Certificate
    issuing_cert: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey
    validity_days: int = 365

    @property
    def chain_pem(self) -> bytes:
        return self.issuing_cert.public_bytes(serialization.Encoding.PEM)

    # --- init -----------------------------------------------------------------

    @classmethod
    def init(cls, directory: str | Path, *, name: str = "Example Mail CA", domain: str = "example.test",
             validity_days: int = 365) -> Authority:
        """Create DIR with a fresh root, issuing CA and DKIM key; refuses a DIR that already holds a CA."""
        d = Path(directory)
        if (d / CONFIG_FILE).exists():
            raise CADirError(f"{d} already holds a CA (remove it first)")
        if not 1 <= validity_days <= 825:
            raise CADirError("validity must be 1..825 days (S/MIME BR §6.3.2)")
        domain = domain.strip().rstrip(".").lower()
        if not domain or "@" in domain or " " in domain:
            raise CADirError(f"not a mail domain: {domain!r}")
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        passphrase = os.environ.get(PASSPHRASE_ENV, "").encode()
        if not passphrase:
            passphrase = secrets.token_urlsafe(32).encode()
            write_private(d / "passphrase", passphrase + b"\n")

        now = _dt.datetime.now(_dt.UTC).replace(microsecond=0) - _dt.timedelta(minutes=5)
        root_key = ec.generate_private_key(ec.SECP384R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root")])
        root = _ca_cert(root_name, root_key.public_key(), root_name, root_key, now, 7300, path_len=None)
        issuing_key = ec.generate_private_key(ec.SECP384R1())
        issuing_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Issuing CA")])
        issuing = _ca_cert(issuing_name, issuing_key.public_key(), root_name, root_key, now, 3650, path_len=0)
        dkim_key = rsa.generate_private_key(65537, 2048)
        selector = "acme" + secrets.token_hex(4)

        enc = serialization.BestAvailableEncryption(passphrase)
        for fname, key in (("root-key.pem", root_key), ("issuing-key.pem", issuing_key),
                           ("dkim-key.pem", dkim_key)):
            write_private(d / fname, key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8, enc))
        pem = serialization.Encoding.PEM
        write_private(d / "ca.pem", root.public_bytes(pem))
        write_private(d / "issuing.pem", issuing.public_bytes(pem))
        write_private(d / "chain.pem", issuing.public_bytes(pem) + root.public_bytes(pem))
        spki = dkim_key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        zone = ("; the CA's DKIM key for its challenge mails (autosmime ca init)\n$ORIGIN .\n"
                + dkim_txt_record(selector, domain, base64.b64encode(spki).decode()))
        write_private(d / "dns.zone", zone.encode())
        config = {"name": name, "domain": domain, "dkim_selector": selector, "mail_from": f"acme@{domain}",
                  "validity_days": validity_days}
        write_private(d / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
        for public in ("ca.pem", "issuing.pem", "chain.pem", "dns.zone", CONFIG_FILE):
            os.chmod(d / public, 0o644)   # certificates, zone and settings are public
        return cls.open(d)

    # --- open -----------------------------------------------------------------

    @classmethod
    def open(cls, directory: str | Path) -> Authority:
        d = Path(directory)
        try:
            config = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8"))
            root = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
            issuing = x509.load_pem_x509_certificate((d / "issuing.pem").read_bytes())
            issuing_pem = (d / "issuing-key.pem").read_bytes()
            dkim_pem = (d / "dkim-key.pem").read_bytes()
        except FileNotFoundError as e:
            raise CADirError(f"{d} is not a CA directory (missing {Path(e.filename).name}; run 'autosmime ca init')"
                             ) from None
        except (OSError, ValueError, KeyError) as e:
            raise CADirError(f"cannot read the CA directory {d}: {e}") from None
        passphrase = _passphrase(d)
        issuing_key = _load_key(issuing_pem, passphrase)
        dkim_key = _load_key(dkim_pem, passphrase)
        if not isinstance(issuing_key, ec.EllipticCurvePrivateKey) or not isinstance(dkim_key, rsa.RSAPrivateKey):
            raise CADirError(f"unexpected key types in {d}")
        if issuing_key.public_key().public_numbers() != issuing.public_key().public_numbers():  # type: ignore[union-attr]
            raise CADirError(f"issuing-key.pem does not belong to issuing.pem in {d}")
        return cls(directory=d, name=config["name"], domain=config["domain"], mail_from=config["mail_from"],
                   dkim_selector=config["dkim_selector"], dkim_key=dkim_key, root_cert=root,
                   issuing_cert=issuing, issuing_key=issuing_key,
                   validity_days=int(config.get("validity_days", 365)))


def _passphrase(d: Path) -> bytes:
    env = os.environ.get(PASSPHRASE_ENV, "").encode()
    if env:
        return env
    try:
        return (d / "passphrase").read_bytes().strip()
    except OSError:
        raise CADirError(f"no CA passphrase: set ${PASSPHRASE_ENV} or restore {d / 'passphrase'}") from None


def _load_key(pem: bytes, passphrase: bytes) -> object:
    try:
        return serialization.load_pem_private_key(pem, passphrase)
    except (TypeError, ValueError):
        raise WrongPassword("the CA passphrase does not open the CA keys") from None


def _ca_cert(subject: x509.Name, public_key: ec.EllipticCurvePublicKey, issuer: x509.Name,
             signer: ec.EllipticCurvePrivateKey, start: _dt.datetime, days: int,
             path_len: int | None) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if subject != issuer:
        builder = (builder
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                                  critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False))
    return builder.sign(signer, hashes.SHA384())
