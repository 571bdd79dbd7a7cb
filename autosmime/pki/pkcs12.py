"""One standard PKCS#12 file holding every key and certificate, and a strict reader for any PKCS#12.

    >>> from autosmime.pki.pkcs12 import build_pfx, parse_pfx
    >>> from autosmime.pki.profiles import new_key, make_ca, make_mailbox_cert
    >>> ca_key, ca = make_ca("Test CA", new_key("ec"))
    >>> k1, k2 = new_key("ec"), new_key("ec")
    >>> items = [(k, make_mailbox_cert(a, k.public_key(), ca_key, ca), (ca,)) for k, a in ((k1, "a@x.test"), (k2, "b@x.test"))]
    >>> pfx = build_pfx(items, b"secret", iterations=1000)
    >>> [p.cert.subject.rfc4514_string() for p in parse_pfx(pfx, b"secret")]
    ['1.2.840.113549.1.9.1=a@x.test,CN=a@x.test', '1.2.840.113549.1.9.1=b@x.test,CN=b@x.test']

Why not plain ``cryptography``: it writes one key per PFX and loads one key per
PFX, and it loads an unprotected PFX with any password. So:

- modern files (the default) are assembled here with asn1crypto: every bag
  PBES2 / PBKDF2-HMAC-SHA256 / AES-256-CBC under one salt (one derivation,
  a fresh IV per bag), cert bags with localKeyID = SHA-1 of the certificate,
  and an HMAC-SHA256 MAC computed here with the RFC 7292 App. B KDF at the
  same iteration count (``cryptography`` fixes its MAC at 2048 iterations,
  the cheap path for guessing);
- legacy files (3DES + SHA-1 MAC, for Windows/Android/gpgsm) are built one
  key at a time with ``cryptography``'s encryption builder (salts redrawn
  where gpgsm 2.2.40 would derive a wrong key), their SafeBags merged, and
  the MAC recomputed over the merged AuthenticatedSafe; ``build_legacy_pfxs``
  also makes one file per key from the same parts, since gpgsm 2.2 reads
  one private key per file;
- the reader verifies the MAC first, then decrypts PBES2 (AES, 3DES) and
  PKCS#12 PBE (3DES, RC2-40/128) itself, and reads BER (NSS) as well as DER.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from asn1crypto import algos, cms, core
from asn1crypto import keys as akeys
from asn1crypto import pkcs12 as ap12
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.serialization import pkcs12 as cpkcs12

from autosmime.errors import BackupRejected, KeyFileError, UnsupportedAlgorithm, WrongPassword
from autosmime.pki._rc2 import rc2_cbc_decrypt
from autosmime.pki.certs import cert_address, spki
from autosmime.pki.keys import KeyPair, as_private_key

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

MAX_ITERATIONS = 600_000
#: a file asking for more work than this is refused rather than hanging the reader
READ_ITERATION_LIMIT = 10_000_000
_HASHES = {  # name -> (hashlib constructor, output bytes u, block bytes v)
    "sha1": (hashlib.sha1, 20, 64),
    "sha224": (hashlib.sha224, 28, 64),
    "sha256": (hashlib.sha256, 32, 64),
    "sha384": (hashlib.sha384, 48, 128),
    "sha512": (hashlib.sha512, 64, 128),
}


# --- RFC 7292 Appendix B ------------------------------------------------------


def _bmp(password: bytes) -> bytes:
    """The PKCS#12 password form: BMPString of the text plus a 2-byte NUL."""
    try:
        text = password.decode("utf-8")
    except UnicodeDecodeError:
        text = password.decode("latin-1")
    return text.encode("utf-16-be") + b"\x00\x00"


def _kdf(hash_name: str, bmp_password: bytes, salt: bytes, purpose: int, iterations: int, n: int) -> bytes:
    """RFC 7292 App. B.2: purpose 1 = key, 2 = IV, 3 = MAC key."""
    out = b""
    for a, _ in _kdf_rounds(hash_name, bmp_password, salt, purpose, iterations):
        out += a
        if len(out) >= n:
            return out[:n]
    raise AssertionError("unreachable")  # pragma: no cover - the rounds never end


def _kdf_rounds(hash_name: str, bmp_password: bytes, salt: bytes, purpose: int,
                iterations: int) -> Iterator[tuple[bytes, list[int]]]:
    """RFC 7292 App. B.2 round by round: each A_i, and the blocks I_j + B + 1 (mod 2^8v) the next round uses."""
    h, u, v = _HASHES[hash_name]

    def fill(data: bytes) -> bytes:
        if not data:
            return b""
        n = v * ((len(data) + v - 1) // v)
        return (data * (n // len(data) + 1))[:n]

    d = bytes([purpose]) * v
    i_block = fill(salt) + fill(bmp_password)
    while True:
        a = h(d + i_block).digest()
        for _ in range(iterations - 1):
            a = h(a).digest()
        b = int.from_bytes((a * (v // u + 1))[:v], "big") + 1
        sums = [(int.from_bytes(i_block[j:j + v], "big") + b) % (1 << (8 * v)) for j in range(0, len(i_block), v)]
        yield a, sums
        i_block = b"".join(s.to_bytes(v, "big") for s in sums)


def _mac(hash_name: str, bmp_password: bytes, salt: bytes, iterations: int, content: bytes) -> bytes:
    h, u, _ = _HASHES[hash_name]
    key = _kdf(hash_name, bmp_password, salt, 3, iterations, u)
    return hmac.new(key, content, h).digest()


# --- writing ------------------------------------------------------------------


def _unpack(item):
    if isinstance(item, (tuple, list)):
        key, cert = item[0], item[1]
        chain = tuple(item[2]) if len(item) > 2 and item[2] else ()
        return key, cert, chain
    return item.key, item.cert, tuple(item.chain)  # KeyPair, VaultEntry


def _default_name(cert: x509.Certificate) -> str:
    email = cert_address(cert)
    if email:
        return email
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else "autosmime key"


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _attrs(name: str | None, local_key_id: bytes | None) -> ap12.Attributes | None:
    attrs: list[dict[str, object]] = []
    if name:
        attrs.append({"type": "friendly_name", "values": [name]})
    if local_key_id:
        attrs.append({"type": "local_key_id", "values": [local_key_id]})
    return ap12.Attributes(attrs) if attrs else None


def _bag(bag_id: str, value, name: str | None = None, local_key_id: bytes | None = None) -> ap12.SafeBag:
    bag = {"bag_id": bag_id, "bag_value": value}
    attrs = _attrs(name, local_key_id)
    if attrs is not None:
        bag["bag_attributes"] = attrs
    return ap12.SafeBag(bag)


class _Pbes2Writer:
    """PBES2 / PBKDF2-HMAC-SHA256 / AES-256-CBC with one derivation for the whole file."""

    def __init__(self, password: bytes, iterations: int) -> None:
        self.salt = secrets.token_bytes(16)
        self.iterations = iterations
        self.key = hashlib.pbkdf2_hmac("sha256", password, self.salt, iterations, 32)

    def encrypt(self, plain: bytes) -> tuple[algos.EncryptionAlgorithm, bytes]:
        iv = secrets.token_bytes(16)
        padder = padding.PKCS7(128).padder()
        enc = Cipher(AES(self.key), modes.CBC(iv)).encryptor()
        ct = enc.update(padder.update(plain) + padder.finalize()) + enc.finalize()
        alg = algos.EncryptionAlgorithm({
            "algorithm": "pbes2",
            "parameters": {
                "key_derivation_func": {
                    "algorithm": "pbkdf2",
                    "parameters": {
                        "salt": algos.Pbkdf2Salt(name="specified", value=self.salt),
                        "iteration_count": self.iterations,
                        "prf": {"algorithm": "sha256", "parameters": core.Null()},
                    },
                },
                "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
            },
        })
        return alg, ct


def _modern_auth_safe(triples, chain_certs, names, password: bytes, iterations: int) -> list[cms.ContentInfo]:
    writer = _Pbes2Writer(password, iterations)
    cert_bags, key_bags = [], []
    for (key, cert, _), name in zip(triples, names):
        lkid = cert.fingerprint(hashes.SHA1())
        cert_bags.append(_bag("cert_bag", ap12.CertBag({"cert_id": "x509", "cert_value": ax509.Certificate.load(_der(cert))}), name, lkid))
        pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        alg, ct = writer.encrypt(pkcs8)
        key_bags.append(_bag("pkcs8_shrouded_key_bag", akeys.EncryptedPrivateKeyInfo({"encryption_algorithm": alg, "encrypted_data": ct}), name, lkid))
    for cert in chain_certs:
        cert_bags.append(_bag("cert_bag", ap12.CertBag({"cert_id": "x509", "cert_value": ax509.Certificate.load(_der(cert))})))
    alg, ct = writer.encrypt(ap12.SafeContents(cert_bags).dump())
    encrypted = cms.EncryptedData({
        "version": "v0",
        "encrypted_content_info": {"content_type": "data", "content_encryption_algorithm": alg, "encrypted_content": ct},
    })
    return [
        cms.ContentInfo({"content_type": "encrypted_data", "content": encrypted}),
        cms.ContentInfo({"content_type": "data", "content": core.OctetString(ap12.SafeContents(key_bags).dump())}),
    ]


# gpgsm (GnuPG 2.2.40, Debian 12; the same code is in every minip12.c we have
# seen) derives PKCS#12-PBE keys with a defect: string_to_key() updates its two
# 64-byte blocks I_j := (I_j + B + 1) mod 2^512 and writes each back with
# gcry_mpi_print(), which stores the number left-aligned in as few bytes as it
# needs. When a sum's top byte is 0 (1 in 256 per block) the block is shifted,
# so every key byte after the first 20 is wrong. A 3DES key (24 bytes) needs
# that update; its IV (8 bytes) and the SHA-1 MAC key (20) do not. gpgsm then
# decrypts garbage, blames the passphrase and refuses the whole file: about 2%
# of freshly salted legacy files (two or three 3DES blobs each).


def _gpgsm_misderives(bmp_password: bytes, salt: bytes, iterations: int, key_len: int) -> bool:
    """True if gpgsm's string_to_key gets a different SHA-1 PKCS#12-PBE key than RFC 7292 App. B.2 for this salt."""
    _, u, v = _HASHES["sha1"]
    produced = 0
    for a, sums in _kdf_rounds("sha1", bmp_password, salt, 1, iterations):
        produced += len(a)
        if produced >= key_len:
            return False
        if any(s < 1 << (8 * (v - 1)) for s in sums):  # leading zero byte: gpgsm stores it shifted
            return True
        if produced + u >= key_len:  # the next round completes the key: its blocks are never used, skip its hashing
            return False
    raise AssertionError("unreachable")  # pragma: no cover


def _pkcs12_pbe_algs(safe_contents: bytes):
    """The encryption algorithm of each shrouded key bag, nested ones included."""
    for bag in ap12.SafeContents.load(safe_contents):
        kind = bag["bag_id"].native
        if kind == "pkcs8_shrouded_key_bag":
            yield bag["bag_value"]["encryption_algorithm"]
        elif kind == "safe_contents":
            yield from _pkcs12_pbe_algs(bag["bag_value"].untag().dump())


def gpgsm_misderives_key(auth_safe: Sequence[cms.ContentInfo] | bytes, password: bytes) -> bool:
    """True if gpgsm 2.2.40 cannot open this PKCS#12 (a Pfx's DER, or its ContentInfos) with the right password.

    Checks every SHA-1 PKCS#12-PBE blob (encryptedData and shrouded key bags)
    for the gpgsm key-derivation defect described above; PBES2 blobs and blobs
    with keys of at most 20 bytes (RC2-40) are never affected.
    """
    infos: Sequence[Any] = ap12.Pfx.load(auth_safe).authenticated_safe if isinstance(auth_safe, bytes) else auth_safe
    algs = []
    for info in infos:
        ctype = info["content_type"].native
        if ctype == "encrypted_data":
            algs.append(info["content"]["encrypted_content_info"]["content_encryption_algorithm"])
            continue  # its bags are encrypted; gpgsm only gets to them after the right key
        if ctype == "data":
            algs.extend(_pkcs12_pbe_algs(info["content"].native))
    bmp = _bmp(password)
    for alg in algs:
        if alg.kdf == "pkcs12_kdf" and alg.kdf_hmac == "sha1" and alg.key_length > 20:
            if _gpgsm_misderives(bmp, alg.kdf_salt, alg.kdf_iterations, alg.key_length):
                return True
    return False


def _legacy_parts(triples, chain_certs, names, password: bytes,
                  iterations: int) -> tuple[list[list[cms.ContentInfo]], list[cms.ContentInfo]]:
    """The ContentInfos of each key (its shrouded key bag and certificate) and of the chain certificates."""
    enc = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(iterations)
        .key_cert_algorithm(cpkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(password)
    )

    def draw(name: bytes | None, key: object, cert: x509.Certificate | None,
             cas: list[x509.Certificate] | None) -> list[cms.ContentInfo]:
        # A fresh serialisation draws fresh salts; redraw while gpgsm 2.2.40 would
        # derive a wrong 3DES key (see _gpgsm_misderives). Each try fails with p ~ 2%.
        for _ in range(64):
            pfx = cpkcs12.serialize_key_and_certificates(name, key, cert, cas, enc)  # type: ignore[arg-type]
            part = [ci.copy() for ci in ap12.Pfx.load(pfx).authenticated_safe]
            if not gpgsm_misderives_key(part, password):
                return part
        raise KeyFileError("could not draw salts that gpgsm can read")

    keys = [draw(n.encode("utf-8"), k, c, None) for (k, c, _), n in zip(triples, names)]
    return keys, (draw(None, None, None, list(chain_certs)) if chain_certs else [])


def _legacy_auth_safe(triples, chain_certs, names, password: bytes, iterations: int) -> list[cms.ContentInfo]:
    keys, chain = _legacy_parts(triples, chain_certs, names, password, iterations)
    return [ci for part in keys for ci in part] + chain


def _prepare(items: Sequence, password: bytes, iterations: int, friendly_names: Sequence[str] | None):
    """(key, cert, chain) triples, their friendly names and the distinct chain certificates; checked."""
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise KeyFileError(f"PKCS#12 iterations must be between 1 and {MAX_ITERATIONS}")
    if not isinstance(password, bytes):
        raise KeyFileError("the PKCS#12 password must be bytes")
    triples = [_unpack(i) for i in items]
    if not triples:
        raise KeyFileError("nothing to put in the PKCS#12 file")
    if friendly_names is not None and len(friendly_names) != len(triples):
        raise KeyFileError("one friendly name per key is needed")
    names = list(friendly_names) if friendly_names is not None else [_default_name(c) for _, c, _ in triples]
    seen = {_der(c) for _, c, _ in triples}
    chain_certs = []
    for _, _, chain in triples:
        for cert in chain:
            if _der(cert) not in seen:
                seen.add(_der(cert))
                chain_certs.append(cert)
    return triples, names, chain_certs


def _pfx(infos: Sequence[cms.ContentInfo], password: bytes, iterations: int, mac_hash: str) -> bytes:
    """The PFX around ``infos``, with its MAC (RFC 7292 App. B key, ``iterations`` rounds)."""
    auth_safe = ap12.AuthenticatedSafe([ci.copy() for ci in infos]).dump()
    salt = secrets.token_bytes(16)
    pfx = ap12.Pfx({
        "version": "v3",
        "auth_safe": {"content_type": "data", "content": core.OctetString(auth_safe)},
        "mac_data": {
            "mac": {"digest_algorithm": {"algorithm": mac_hash, "parameters": core.Null()},
                    "digest": _mac(mac_hash, _bmp(password), salt, iterations, auth_safe)},
            "mac_salt": salt,
            "iterations": iterations,
        },
    })
    return pfx.dump()


def build_pfx(
    items: Sequence,
    password: bytes,
    *,
    legacy: bool = False,
    iterations: int = 600_000,
    friendly_names: Sequence[str] | None = None,
) -> bytes:
    """ONE PKCS#12 holding every key of ``items`` ((key, cert, chain) tuples or KeyPairs).

    Chain certificates are stored once each. ``legacy``: 3DES bags and a
    SHA-1 MAC for old importers. ``iterations`` (at most 600,000, the
    Windows limit) applies to every bag and to the MAC.
    """
    triples, names, chain_certs = _prepare(items, password, iterations, friendly_names)
    build = _legacy_auth_safe if legacy else _modern_auth_safe
    return _pfx(build(triples, chain_certs, names, password, iterations), password, iterations,
                "sha1" if legacy else "sha256")


def build_legacy_pfxs(
    items: Sequence,
    password: bytes,
    *,
    iterations: int = 600_000,
    friendly_names: Sequence[str] | None = None,
) -> tuple[bytes, list[bytes]]:
    """The legacy PKCS#12 with every key, and one legacy PKCS#12 per key (in the order of ``items``).

    gpgsm 2.2 reads ONE private key per file: its minip12.c stops at the
    second shrouded key bag ("a key has already been received") and so
    imports nothing from a multi-key file (2.4 stops at the third). Each
    single-key file holds its key and certificate plus every chain
    certificate. The files share their encrypted parts, so each key is
    encrypted (and its salts checked for gpgsm) once; a file costs its MAC.
    """
    triples, names, chain_certs = _prepare(items, password, iterations, friendly_names)
    keys, chain = _legacy_parts(triples, chain_certs, names, password, iterations)
    every = _pfx([ci for part in keys for ci in part] + chain, password, iterations, "sha1")
    return every, [_pfx(part + chain, password, iterations, "sha1") for part in keys]


# --- reading ------------------------------------------------------------------


def _unpad(data: bytes, block: int) -> bytes:
    if not data or len(data) % block:
        raise WrongPassword("the password does not open the PKCS#12 file")
    n = data[-1]
    if not 1 <= n <= block or data[-n:] != bytes([n]) * n:
        raise WrongPassword("the password does not open the PKCS#12 file")
    return data[:-n]


class _Reader:
    def __init__(self, password: bytes | None, require_protected: bool, max_iterations: int = READ_ITERATION_LIMIT,
                 verify_mac: bool = True) -> None:
        self.max_iterations = max_iterations
        self.verify_mac = verify_mac
        self.password = password or b""
        # PKCS#12 PBE and the MAC use the BMPString form; an absent password is zero bytes.
        self.bmp = _bmp(self.password) if password is not None else b""
        self.require_protected = require_protected
        self._keys: dict[tuple, bytes] = {}

    # decryption of one PBES2 / PKCS#12-PBE blob
    def decrypt(self, alg: algos.EncryptionAlgorithm, data: bytes) -> bytes:
        try:
            name = alg["algorithm"].native
            kdf = alg.kdf
            iterations = alg.kdf_iterations
            salt = alg.kdf_salt
            cipher = alg.encryption_cipher
            key_len = alg.key_length
        except (ValueError, KeyError, TypeError, NotImplementedError) as e:
            raise UnsupportedAlgorithm(str(alg["algorithm"].dotted), "PKCS#12 encryption") from e
        self.check_iterations(iterations, "PKCS#12 iteration count")
        if kdf == "pbkdf2":
            prf = alg.kdf_hmac
            if prf not in _HASHES:
                raise UnsupportedAlgorithm(prf, "PBKDF2 hash")
            cache = (prf, salt, iterations, key_len)
            if cache not in self._keys:
                self._keys[cache] = hashlib.pbkdf2_hmac(prf, self.password, salt, iterations, key_len)
            key, iv = self._keys[cache], alg.encryption_iv
        elif kdf == "pkcs12_kdf":
            iv_len = 8 if cipher in ("tripledes", "rc2") else 0
            key = _kdf(alg.kdf_hmac, self.bmp, salt, 1, iterations, key_len)
            iv = _kdf(alg.kdf_hmac, self.bmp, salt, 2, iterations, iv_len) if iv_len else b""
        else:
            raise UnsupportedAlgorithm(str(name), "PKCS#12 encryption")
        try:
            if cipher == "aes":
                dec = Cipher(AES(key), modes.CBC(iv)).decryptor()
                return _unpad(dec.update(data) + dec.finalize(), 16)
            if cipher == "tripledes":
                dec = Cipher(TripleDES(key), modes.CBC(iv)).decryptor()
                return _unpad(dec.update(data) + dec.finalize(), 8)
            if cipher == "rc2":
                bits = alg.encryption_cipher_effective_bits if hasattr(alg, "encryption_cipher_effective_bits") else len(key) * 8
                return _unpad(rc2_cbc_decrypt(key, len(key) * 8 if kdf == "pkcs12_kdf" else bits, iv, data), 8)
        except ValueError as e:
            raise KeyFileError(f"PKCS#12 ciphertext is malformed: {e}") from None
        raise UnsupportedAlgorithm(str(cipher), "PKCS#12 cipher")

    def check_mac(self, pfx: ap12.Pfx, content: bytes) -> None:
        mac_data = pfx["mac_data"]
        if isinstance(mac_data, core.Void) or mac_data.native is None:
            if self.require_protected:
                raise BackupRejected("the PKCS#12 file has no integrity MAC, so it cannot be trusted")
            return
        hash_name = mac_data["mac"]["digest_algorithm"]["algorithm"].native
        if hash_name not in _HASHES:
            raise UnsupportedAlgorithm(str(hash_name), "PKCS#12 MAC")
        iterations = mac_data["iterations"].native
        self.check_iterations(iterations, "PKCS#12 MAC iteration count")
        if not self.verify_mac and self.password:  # the caller authenticated these exact bytes already
            return
        salt = mac_data["mac_salt"].native
        expected = mac_data["mac"]["digest"].native
        candidates = [self.bmp]
        if not self.password:  # tools disagree on the empty password: with or without the NUL
            candidates = [_bmp(b""), b""]
        for bmp in candidates:
            if hmac.compare_digest(_mac(hash_name, bmp, salt, iterations, content), expected):
                self.bmp = bmp
                return
        raise WrongPassword("the password does not open the PKCS#12 file")

    def check_iterations(self, iterations: object, what: str) -> None:
        if not isinstance(iterations, int) or not 1 <= iterations <= self.max_iterations:
            raise KeyFileError(f"{what} {iterations} is out of range (at most {self.max_iterations:,} accepted here)")

    def check_costs(self, pfx: ap12.Pfx, content: bytes) -> None:
        """Every iteration count in sight (the MAC's, each encryptedData's, each shrouded key bag's
        outside one) within the limit, before the first derivation: a file over it costs nothing."""
        mac_data = pfx["mac_data"]
        if not isinstance(mac_data, core.Void) and mac_data.native is not None:
            self.check_iterations(mac_data["iterations"].native, "PKCS#12 MAC iteration count")
        for info in ap12.AuthenticatedSafe.load(content):
            ctype = info["content_type"].native
            if ctype == "encrypted_data":
                algs = [info["content"]["encrypted_content_info"]["content_encryption_algorithm"]]
            elif ctype == "data":
                algs = list(_pkcs12_pbe_algs(info["content"].native))
            else:
                continue
            for alg in algs:
                try:
                    iterations = alg.kdf_iterations
                except (ValueError, KeyError, TypeError, NotImplementedError):
                    continue  # unsupported: refused where it is used, before any derivation
                self.check_iterations(iterations, "PKCS#12 iteration count")

    def bags(self, safe_contents: bytes, found: list) -> None:
        for bag in ap12.SafeContents.load(safe_contents):
            kind = bag["bag_id"].native
            lkid = None
            attrs = bag["bag_attributes"]
            if not isinstance(attrs, core.Void):
                for attr in attrs:
                    if attr["type"].native == "local_key_id" and len(attr["values"]):
                        lkid = attr["values"][0].native
            if kind == "pkcs8_shrouded_key_bag":
                epki = bag["bag_value"]
                der = self.decrypt(epki["encryption_algorithm"], epki["encrypted_data"].native)
                found.append(("key", self._load_key(der), lkid))
            elif kind == "key_bag":
                if self.require_protected:
                    raise BackupRejected("the PKCS#12 file holds an unencrypted private key, so it cannot be trusted")
                found.append(("key", self._load_key(bag["bag_value"].untag().dump()), lkid))
            elif kind == "cert_bag":
                cert_bag = bag["bag_value"]
                if cert_bag["cert_id"].native != "x509":
                    continue
                raw = cert_bag["cert_value"]
                der = raw.parsed.dump() if hasattr(raw, "parsed") else raw.native
                found.append(("cert", x509.load_der_x509_certificate(der), lkid))
            elif kind == "safe_contents":
                self.bags(bag["bag_value"].untag().dump(), found)
            # CRL and secret bags carry nothing autosmime uses

    @staticmethod
    def _load_key(der: bytes):
        try:
            return as_private_key(serialization.load_der_private_key(der, None))
        except (ValueError, TypeError):
            raise WrongPassword("the password does not open the PKCS#12 file") from None
        except Exception as e:  # e.g. an unsupported key type
            raise KeyFileError(f"PKCS#12 private key cannot be used: {e}") from None


def parse_pfx(data: bytes, password: bytes | None, *, require_protected: bool = True,
              max_iterations: int = READ_ITERATION_LIMIT, verify_mac: bool = True) -> list[KeyPair]:
    """EVERY key in a PKCS#12 file with its certificate; the other certificates form each chain.

    ``require_protected`` refuses (BackupRejected) a file without a MAC or
    with an unencrypted key: ``cryptography`` would open such a file with any
    password, so a planted file could inject a stranger's key.
    ``max_iterations`` caps every key derivation (KeyFileError above it,
    checked before the first one where the count is visible): an untrusted
    file gets what its legitimate writer uses, not ten million.
    ``verify_mac`` False is for bytes the caller has already authenticated
    by other means (a key backup's manifest MAC covers the file's SHA-256):
    the MAC must still be there and within ``max_iterations``, but its
    derivation, which could only confirm what is known, is not run.
    """
    reader = _Reader(password, require_protected, max_iterations, verify_mac)
    try:
        pfx = ap12.Pfx.load(data)
        if pfx["auth_safe"]["content_type"].native != "data":
            raise UnsupportedAlgorithm("public-key integrity mode", "PKCS#12 mode")
        content = pfx["auth_safe"]["content"].native
        if not isinstance(content, bytes):
            raise ValueError("authSafe content is not an OCTET STRING")
        reader.check_costs(pfx, content)
        reader.check_mac(pfx, content)
        found: list = []
        encrypted_any = False
        for info in ap12.AuthenticatedSafe.load(content):
            ctype = info["content_type"].native
            if ctype == "data":
                reader.bags(info["content"].native, found)
            elif ctype == "encrypted_data":
                eci = info["content"]["encrypted_content_info"]
                plain = reader.decrypt(eci["content_encryption_algorithm"], eci["encrypted_content"].native)
                encrypted_any = True
                reader.bags(plain, found)
            else:
                raise UnsupportedAlgorithm(str(ctype), "PKCS#12 content type")
    except (WrongPassword, BackupRejected, KeyFileError, UnsupportedAlgorithm):
        raise
    except Exception as e:  # asn1crypto and cryptography raise many kinds on garbage
        raise KeyFileError(f"not a readable PKCS#12 file ({type(e).__name__})") from None
    del encrypted_any
    keys = [(k, lkid) for kind, k, lkid in found if kind == "key"]
    certs = [(c, lkid) for kind, c, lkid in found if kind == "cert"]
    if not keys:
        raise KeyFileError("the PKCS#12 file holds no private key")
    pairs: list[tuple] = []
    used: set[int] = set()
    for key, lkid in keys:
        match = None
        if lkid is not None:
            match = next((i for i, (c, l) in enumerate(certs) if l == lkid and i not in used
                          and spki(c) == spki(key)), None)
        if match is None:
            wanted = spki(key)
            match = next((i for i, (c, _) in enumerate(certs) if i not in used and spki(c) == wanted), None)
        if match is None:
            raise KeyFileError("the PKCS#12 file holds a private key without its certificate")
        used.add(match)
        pairs.append((key, certs[match][0]))
    chain = tuple(c for i, (c, _) in enumerate(certs) if i not in used)
    return [KeyPair(key, cert, chain) for key, cert in pairs]
