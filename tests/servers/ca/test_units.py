"""Unit-level checks of the CA's parts: tokens, DKIM signing, reply parsing, zone files, the CA directory."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from autosmime.errors import CADirError, DNSZoneError, WrongPassword
from autosmime.servers.ca import mail
from autosmime.servers.ca.authority import PASSPHRASE_ENV, Authority
from autosmime.servers.ca.dns import ZoneResolver, dkim_dnsfunc, dkim_txt_record
from autosmime.servers.ca.reply import ReplyRejected, reply_keys, response_block, verify_reply
from autosmime.servers.ca.server import parse_hostport
from autosmime.servers.ca.service import key_authorization_digest
from autosmime.servers.ca.settings import Settings
from tests.servers.ca.support import MailProvider, compose_reply


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_token_readings_agree() -> None:
    """token-part1 of 24 bytes: the string and the bytes readings of the RFC give the same digest."""
    thumb = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    for _ in range(50):
        t1, t2 = mail.new_token1(), mail.new_token2()
        assert len(_b64d(t1)) == 24 and len(_b64d(t2)) == 32
        bytes_token = base64.urlsafe_b64encode(_b64d(t1) + _b64d(t2)).rstrip(b"=").decode()
        bytes_reading = base64.urlsafe_b64encode(hashlib.sha256(f"{bytes_token}.{thumb}".encode()).digest()
                                                 ).rstrip(b"=").decode()
        assert key_authorization_digest(t1, t2, thumb) == bytes_reading


def _zone(key: rsa.RSAPrivateKey, selector: str, domain: str) -> str:
    from cryptography.hazmat.primitives import serialization

    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "$ORIGIN .\n" + dkim_txt_record(selector, domain, base64.b64encode(spki).decode())


def test_dkim_sign_verifies_with_dkimpy_and_oversigns() -> None:
    key = rsa.generate_private_key(65537, 2048)
    resolver = ZoneResolver.from_text(_zone(key, "s1", "ca.test"))
    raw = (b"From: acme@ca.test\r\nTo: a@example.test\r\nSubject: ACME:  folded\r\n\t token \r\n"
           b"Date: Sat, 5 Dec 2026 10:00:00 +0000\r\nMessage-ID: <x@ca.test>\r\n\r\nline with   spaces  \r\n\r\n\r\n")
    signed = mail.dkim_sign(raw, selector="s1", domain="ca.test", key=key)
    assert dkim.verify(signed, dnsfunc=dkim_dnsfunc(resolver))
    # over-signed: adding a Reply-To (absent when signed) breaks the signature
    tampered = signed.replace(b"\r\nTo:", b"\r\nReply-To: evil@x.test\r\nTo:", 1)
    assert not dkim.verify(tampered, dnsfunc=dkim_dnsfunc(resolver))
    assert not dkim.verify(signed.replace(b"spaces", b"spices"), dnsfunc=dkim_dnsfunc(resolver))


def test_reply_keys_folded_and_encoded_subjects() -> None:
    assert reply_keys(b"Subject: RE: ACME: abc\r\n def=\r\n\r\n")[0] == "abcdef"
    assert reply_keys(b"Subject: =?UTF-8?Q?Re:_ACME:_LgYem?=\r\nIn-Reply-To: <a@b>\r\n\r\n") == ("LgYem", "<a@b>")
    assert reply_keys(b"Subject: hello\r\n\r\n") == (None, None)


def _msg(body: str, ctype: str = "text/plain") -> object:
    import email
    import email.policy

    raw = f"From: a@example.test\r\nContent-Type: {ctype}\r\n\r\n{body}".encode()
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_response_block_rules() -> None:
    digest = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
    wrapped = f"> quoted challenge\r\n-----BEGIN ACME RESPONSE-----\r\n{digest[:20]}\r\n{digest[20:]}=\r\n" \
              "-----END ACME RESPONSE-----\r\nthanks\r\n"
    assert response_block(_msg(wrapped)) == digest                       # type: ignore[arg-type]
    multipart = ("--b\r\nContent-Type: text/plain\r\n\r\n" + wrapped + "--b\r\nContent-Type: text/html\r\n\r\n"
                 "<p>-----BEGIN ACME RESPONSE-----</p>\r\n--b--\r\n")
    assert response_block(_msg(multipart, 'multipart/alternative; boundary="b"')) == digest  # type: ignore[arg-type]
    for bad in ("no block", wrapped + wrapped, "-----BEGIN ACME RESPONSE-----\r\nabc\r\n",
                "-----BEGIN ACME RESPONSE-----\r\n" + "A" * 600 + "\r\n-----END ACME RESPONSE-----\r\n",
                "-----BEGIN ACME RESPONSE-----\r\nab/c+\r\n-----END ACME RESPONSE-----\r\n"):
        with pytest.raises(ReplyRejected):
            response_block(_msg(bad))                                    # type: ignore[arg-type]


def test_verify_reply_two_from_addresses_refused() -> None:
    p = MailProvider()
    raw = compose_reply(sender="a@example.test", to="acme@ca.test", token1="t", in_reply_to="<m@ca>", digest="x")
    raw = raw.replace(b"From: a@example.test", b"From: a@example.test, b@example.test")
    with pytest.raises(ReplyRejected) as e:
        verify_reply(p.sign(raw), dkim_dnsfunc(ZoneResolver.from_text(p.zone)))
    assert e.value.reason == "from"


def test_verify_reply_needs_signed_core_headers() -> None:
    p = MailProvider()
    raw = compose_reply(sender="a@example.test", to="acme@ca.test", token1="t", in_reply_to="<m@ca>", digest="x")
    with pytest.raises(ReplyRejected) as e:
        verify_reply(p.sign(raw, headers=[b"from", b"date"]), dkim_dnsfunc(ZoneResolver.from_text(p.zone)))
    assert e.value.reason == "dkim_headers"


def test_zone_files_merge_and_errors(tmp_path: Path) -> None:
    a = tmp_path / "a.zone"
    a.write_text('$ORIGIN .\nx._domainkey.one.test. 60 IN TXT "v=DKIM1; p=AA"\n'
                 'y._domainkey.two.test. IN TXT "v=DKIM1; " "p=BB"\n')
    b = tmp_path / "b.zone"
    b.write_text('$ORIGIN three.test.\nz._domainkey 60 IN TXT "v=DKIM1; p=CC"\nwww 60 IN A 127.0.0.1\n')
    r = ZoneResolver.from_files([a, b])
    assert r.txt("x._domainkey.ONE.test") == [b"v=DKIM1; p=AA"]
    assert r.txt("y._domainkey.two.test.") == [b"v=DKIM1; p=BB"]
    assert r.txt("z._domainkey.three.test") == [b"v=DKIM1; p=CC"]
    assert r.txt("nothing.test") == []
    bad = tmp_path / "bad.zone"
    bad.write_text("this is not a zone file\n")
    with pytest.raises(DNSZoneError):
        ZoneResolver.from_files([bad])
    with pytest.raises(DNSZoneError):
        ZoneResolver.from_files([tmp_path / "missing.zone"])


def test_ca_directory_keys_encrypted_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    d = tmp_path / "ca"
    Authority.init(d, name="Unit CA", domain="Unit.Test")
    for name in ("root-key.pem", "issuing-key.pem", "dkim-key.pem", "passphrase"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600
    for name in ("root-key.pem", "issuing-key.pem", "dkim-key.pem"):
        assert (d / name).read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    ca = Authority.open(d)
    assert ca.domain == "unit.test" and ca.mail_from == "acme@unit.test"
    assert "_domainkey.unit.test." in (d / "dns.zone").read_text()
    (d / "passphrase").write_text("wrong\n")
    with pytest.raises(WrongPassword):
        Authority.open(d)
    with pytest.raises(CADirError):
        Authority.init(d)
    with pytest.raises(CADirError):
        Authority.open(tmp_path / "nothing")


def test_passphrase_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    d = tmp_path / "ca"
    Authority.init(d)
    assert not (d / "passphrase").exists()
    assert Authority.open(d).issuing_cert is not None
    monkeypatch.setenv(PASSPHRASE_ENV, "another")
    with pytest.raises(WrongPassword):
        Authority.open(d)
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(CADirError):
        Authority.open(d)


def test_settings_and_hostport() -> None:
    assert Settings(authz_ttl=10 ** 9).authz_ttl == 86400
    with pytest.raises(ValueError):
        Settings(validity_days=826)
    assert parse_hostport("127.0.0.1:25") == ("127.0.0.1", 25)
    assert parse_hostport(":8555") == ("127.0.0.1", 8555)
    assert parse_hostport("[::1]:80") == ("::1", 80)
