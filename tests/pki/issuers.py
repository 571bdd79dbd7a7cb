"""Certificate authorities made the ways real ones are made: NSS certutil, OpenSSL req/x509/ca, autosmime's profile.

    >>> from tests.pki.issuers import nss_certutil_ca
    >>> issued = nss_certutil_ca(tmp_path)            # doctest: +SKIP
    >>> issued.user.cert, issued.root                   # doctest: +SKIP
    (PosixPath('.../alice.pem'), PosixPath('.../root.pem'))

Each factory drives the real tool in a temporary directory and returns an
:class:`Issued`: the root to trust, the intermediates (PEM, possibly empty),
and the mailbox user as :class:`tests.interop.peers.User` files, so the
interop peers can sign and encrypt with it. Nothing here builds a
certificate by hand except :func:`br_profile`, which is autosmime's own
issuing code (the S/MIME BR strict shape).

The shapes, as the tools make them by default:

* ``nss-certutil``: ``certutil -S -x -2`` root with basicConstraints cA
  *not* critical and no keyUsage; ``certutil -S -c`` leaf with only a SAN
  (no keyUsage, no extendedKeyUsage, no basicConstraints);
* ``openssl-eku`` / ``openssl-no-eku``: ``openssl req -x509`` root
  (basicConstraints critical), ``openssl x509 -req`` leaf with keyUsage and
  SAN, with or without extendedKeyUsage emailProtection;
* ``openssl-ca-nc``: ``openssl ca`` intermediate with pathlen 0 and a critical
  nameConstraints permitting only addresses at example.test, leaf by ``openssl ca``;
* ``br-profile``: :mod:`autosmime.pki.profiles` root, intermediate, leaf.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key
from tests.interop.peers import Nss, User

PASSWORD = b"issuers-pw"
PROFILES = ["nss-certutil", "openssl-eku", "openssl-no-eku", "openssl-ca-nc", "br-profile"]


@dataclass(frozen=True)
class Issued:
    profile: str
    root: Path            # PEM: what --trust gets
    chain: Path           # PEM intermediates, possibly empty
    user: User            # the mailbox certificate and its key
    nss: Nss | None = None  # the certutil database the certificates were made in


def require(*tools: str) -> None:
    """Skip when a tool is missing; under CI, fail instead (CI must run every peer)."""
    for tool in tools:
        if shutil.which(tool) is None:
            message = f"{tool} is not installed (apt: openssl / libnss3-tools)"
            if os.environ.get("CI"):
                pytest.fail(message + " — CI must run every peer")
            pytest.skip(message)


def run(argv: Sequence[str | os.PathLike], stdin: bytes = b"", cwd: Path | None = None) -> bytes:
    proc = subprocess.run([str(a) for a in argv], input=stdin, capture_output=True, timeout=60, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def load(pem: Path) -> list[x509.Certificate]:
    data = pem.read_bytes()
    return x509.load_pem_x509_certificates(data) if data.strip() else []


def _secret(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _user(d: Path, name: str, email: str, key_pem: Path, cert_pem: Path, chain: Path, p12: Path | None = None) -> User:
    pwfile = d / "password.txt"
    if not pwfile.exists():
        _secret(pwfile, PASSWORD)
    if p12 is None:
        p12 = d / f"{name}.p12"
        run(["openssl", "pkcs12", "-export", "-inkey", key_pem, "-in", cert_pem,
             *(["-certfile", chain] if chain.read_bytes().strip() else []),
             "-name", name, "-passout", f"file:{pwfile}", "-out", p12])
    return User(name=name, email=email, kind="rsa", key=key_pem, cert=cert_pem, p12=p12, p12_legacy=p12,
                password=PASSWORD, password_file=pwfile)


# --- NSS certutil ------------------------------------------------------------------


def nss_certutil_ca(d: Path, email: str = "alice@example.test") -> Issued:
    """A CA and a mailbox certificate made with certutil in an NSS database, as test labs do."""
    require("certutil", "pk12util")
    d.mkdir(parents=True, exist_ok=True)
    nss = Nss(d / "nssdb")
    noise = d / "noise"
    noise.write_bytes(os.urandom(64))
    common = ["-d", nss.db, "-z", noise, "-k", "rsa", "-g", "2048", "-Z", "SHA256"]
    # -2 asks: CA? path length? critical? -- answered as most tutorials do: yes, none, no.
    run(["certutil", "-S", "-x", "-n", "NSS Test CA", "-s", "CN=NSS Test CA,O=Example Lab", "-t", "CT,C,C",
         "-m", "1", "-v", "24", "-2", *common], stdin=b"y\n\nn\n")
    run(["certutil", "-S", "-n", "alice", "-s", f"CN=Alice,E={email}", "-c", "NSS Test CA", "-t", ",,",
         "-m", "2", "-v", "12", "--extSAN", f"email:{email}", *common])
    root = d / "root.pem"
    root.write_bytes(run(["certutil", "-L", "-d", nss.db, "-n", "NSS Test CA", "-a"]))
    cert = d / "alice.pem"
    cert.write_bytes(run(["certutil", "-L", "-d", nss.db, "-n", "alice", "-a"]))
    pwfile = _secret(d / "password.txt", PASSWORD)
    p12 = d / "alice.p12"
    run(["pk12util", "-o", p12, "-n", "alice", "-d", nss.db, "-w", pwfile])
    with warnings.catch_warnings():  # pk12util writes BER, which cryptography reads with a warning
        warnings.simplefilter("ignore", UserWarning)
        key, _, _ = pkcs12.load_key_and_certificates(p12.read_bytes(), PASSWORD)
    assert key is not None
    key_pem = _secret(d / "alice.key", key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    chain = d / "chain.pem"
    chain.write_bytes(b"")
    return Issued("nss-certutil", root, chain, _user(d, "alice", email, key_pem, cert, chain, p12), nss)


def certutil_leaf(issued: Issued, nickname: str, serial: int, extra: Sequence[str] = ()) -> x509.Certificate:
    """Another certificate from the certutil CA of ``issued`` (``extra``: e.g. ``--keyUsage certSigning``)."""
    assert issued.nss is not None
    noise = issued.nss.dir.parent / "noise"
    run(["certutil", "-S", "-n", nickname, "-s", f"CN={nickname}", "-c", "NSS Test CA", "-t", ",,",
         "-m", str(serial), "-v", "12", "--extSAN", f"email:{nickname}@example.test", *extra,
         "-d", issued.nss.db, "-z", noise, "-k", "rsa", "-g", "2048", "-Z", "SHA256"])
    return x509.load_pem_x509_certificate(run(["certutil", "-L", "-d", issued.nss.db, "-n", nickname, "-a"]))


def nss_verdict(issued: Issued, nickname: str, usage: str) -> bool:
    """NSS's own answer: ``certutil -V -u S`` (e-mail signer) or ``-u R`` (e-mail recipient)."""
    assert issued.nss is not None
    proc = subprocess.run(["certutil", "-V", "-u", usage, "-n", nickname, "-d", issued.nss.db],
                          capture_output=True, timeout=60)
    return proc.returncode == 0


# --- OpenSSL -----------------------------------------------------------------------


def openssl_root(d: Path, cn: str = "OpenSSL Test Root", *, newkey: str = "rsa:2048") -> tuple[Path, Path]:
    """``openssl req -x509`` with the distribution's defaults (basicConstraints critical, cA)."""
    require("openssl")
    d.mkdir(parents=True, exist_ok=True)
    key, pem = d / "root.key", d / "root.pem"
    run(["openssl", "req", "-x509", "-newkey", newkey, "-nodes", "-keyout", key, "-subj", f"/CN={cn}",
         "-days", "30", "-out", pem])
    return key, pem


def openssl_issue(d: Path, name: str, subject: str, extensions: str, ca_key: Path, ca_pem: Path, *,
                  newkey: str = "rsa:2048", digest: str | None = "sha256") -> tuple[Path, Path]:
    """``openssl x509 -req``: a key, a CSR and a certificate with exactly ``extensions`` (config lines)."""
    key, csr, pem, ext = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.ext"
    run(["openssl", "req", "-new", "-newkey", newkey, "-nodes", "-keyout", key, "-subj", subject, "-out", csr])
    ext.write_text("[ext]\n" + extensions + "\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "20", *([f"-{digest}"] if digest else []), "-extfile", ext, "-extensions", "ext", "-out", pem])
    return key, pem


LEAF_EKU = """basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:{email}"""
LEAF_NO_EKU = """basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
subjectAltName = email:{email}"""


def openssl_ca(d: Path, *, eku: bool, email: str = "alice@example.test") -> Issued:
    root_key, root = openssl_root(d)
    key, cert = openssl_issue(d, "alice", f"/CN=Alice/emailAddress={email}",
                              (LEAF_EKU if eku else LEAF_NO_EKU).format(email=email), root_key, root)
    chain = d / "chain.pem"
    chain.write_bytes(b"")
    return Issued("openssl-eku" if eku else "openssl-no-eku", root, chain, _user(d, "alice", email, key, cert, chain))


_CA_CONFIG = """[ca]
default_ca = CA_default
[CA_default]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
default_md = sha256
default_days = 20
policy = policy_any
unique_subject = no
copy_extensions = none
[policy_any]
commonName = supplied
organizationName = optional
emailAddress = optional
[v3_inter]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
nameConstraints = critical, permitted;email:{permitted}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_leaf]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:{email}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def _openssl_ca_sign(d: Path, ca_key: Path, ca_pem: Path, csr: Path, out: Path, section: str, **fmt: str) -> None:
    cadir = d / f"ca-{ca_pem.stem}"
    if not cadir.exists():
        (cadir / "newcerts").mkdir(parents=True)
        (cadir / "index.txt").write_text("")
        (cadir / "serial").write_text(os.urandom(8).hex().upper() + "\n")
    cnf = d / f"{out.stem}.cnf"
    cnf.write_text(_CA_CONFIG.format(dir=cadir, **{"permitted": "example.test", "email": "", **fmt}))
    run(["openssl", "ca", "-batch", "-config", cnf, "-extensions", section, "-cert", ca_pem, "-keyfile", ca_key,
         "-in", csr, "-out", out, "-notext"])


def openssl_ca_nc(d: Path, email: str = "alice@example.test", permitted: str = "example.test") -> Issued:
    """Root → intermediate (``openssl ca``, pathlen 0, nameConstraints email:``permitted``) → leaf for ``email``."""
    root_key, root = openssl_root(d, "OpenSSL CA Root")
    inter_key, inter_csr, inter = d / "inter.key", d / "inter.csr", d / "inter.pem"
    run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", inter_key,
         "-subj", "/O=Example Lab/CN=Constrained Intermediate", "-out", inter_csr])
    _openssl_ca_sign(d, root_key, root, inter_csr, inter, "v3_inter", permitted=permitted)
    return Issued("openssl-ca-nc", root, inter, openssl_ca_leaf(d, inter_key, inter, email))


def openssl_ca_leaf(d: Path, ca_key: Path, ca_pem: Path, email: str, name: str = "alice") -> User:
    key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-subj", f"/CN={name.title()}", "-out", csr])
    _openssl_ca_sign(d, ca_key, ca_pem, csr, cert, "v3_leaf", email=email)
    cert.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in load(cert)))  # PEM only
    return _user(d, name, email, key, cert, ca_pem)


# --- autosmime's own issuing profile (the S/MIME BR strict shape) --------------------


def br_profile(d: Path, email: str = "alice@example.test") -> Issued:
    d.mkdir(parents=True, exist_ok=True)
    root_key, root_cert = make_ca("BR Profile Root")
    inter_key, inter_cert = make_ca("BR Profile Issuing CA", issuer_key=root_key, issuer_cert=root_cert)
    key = new_key("rsa")
    cert = make_mailbox_cert(email, key.public_key(), inter_key, inter_cert)
    pem = serialization.Encoding.PEM
    root, chain, cert_pem = d / "root.pem", d / "chain.pem", d / "alice.pem"
    root.write_bytes(root_cert.public_bytes(pem))
    chain.write_bytes(inter_cert.public_bytes(pem))
    cert_pem.write_bytes(cert.public_bytes(pem))
    key_pem = _secret(d / "alice.key", key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    p12 = _secret(d / "alice.p12", pkcs12.serialize_key_and_certificates(
        b"alice", key, cert, [inter_cert], serialization.BestAvailableEncryption(PASSWORD)))
    return Issued("br-profile", root, chain, _user(d, "alice", email, key_pem, cert_pem, chain, p12))


def issue(profile: str, d: Path) -> Issued:
    """The factory for one of :data:`PROFILES`."""
    if profile == "nss-certutil":
        return nss_certutil_ca(d)
    if profile in ("openssl-eku", "openssl-no-eku"):
        return openssl_ca(d, eku=profile == "openssl-eku")
    if profile == "openssl-ca-nc":
        return openssl_ca_nc(d)
    if profile == "br-profile":
        return br_profile(d)
    raise ValueError(profile)
