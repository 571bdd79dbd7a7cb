"""LDAP as the last recipient-lookup source, against a real slapd (the ``ldap_server`` fixture).

Found and chosen from ``userCertificate;binary`` and from a ``userSMIMECertificate`` PKCS#7 blob; no entry is
RecipientNotFound (exit 3); a certificate for another address or from an untrusted CA is not used; a filter
injection never returns another person's certificate; ldaps and StartTLS verify the server; the server down
or TLS unverified is a typed error; the CLI's ``--ldap`` and the setting it remembers.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from autosmime.agent.lookup import LDAP_FILE
from autosmime.errors import (
    LDAPBadURL,
    LDAPError,
    LDAPTLSFailure,
    LDAPUnreachable,
    NoRecipientCertificate,
    RecipientNotFound,
    UsageError,
)
from autosmime.exchange.contacts import Contacts
from autosmime.exchange.ldap import SIZE_LIMIT, LdapSource
from autosmime.exchange.lookup import find_certificate
from tests.servers.directory import support

DER = serialization.Encoding.DER


def fresh(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}@example.test"


def der(cert) -> bytes:  # type: ignore[no-untyped-def]
    return cert.public_bytes(DER)


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_user_certificate_binary_is_found_and_chosen(ldap_server, pki, tmp_path) -> None:
    address = fresh("bob")
    user = pki.user(address)
    ldap_server.add_person(address, certificates=[der(user.cert)])
    source = LdapSource(ldap_server.url, base=ldap_server.base_dn)
    assert source.certificates(address) == [user.cert]
    assert source.certificates(address.upper()) == [user.cert]          # normalised, matched case-insensitively

    contacts = Contacts(tmp_path)
    found = find_certificate(address, contacts, [pki.ca], ldap=source.certificates)
    assert found.source == "ldap" and found.cert == user.cert
    # LDAP vouches for nothing: the certificate is not added to the contacts (nor cached).
    assert contacts.certificates(address) == []
    # The base DN may come from the URL, or from the server's naming contexts.
    assert LdapSource(f"{ldap_server.url}/ou=people,{ldap_server.base_dn}").certificates(address) == [user.cert]
    assert LdapSource(ldap_server.url).certificates(address) == [user.cert]


def test_every_certificate_of_a_smime_blob_is_found(ldap_server, pki, tmp_path) -> None:
    import datetime as _dt

    address = fresh("carol")
    older = pki.user(address, not_before=_dt.datetime.now(_dt.UTC) - _dt.timedelta(days=30))
    newer = pki.user(address)
    blob = pkcs7.serialize_certificates([older.cert, newer.cert, pki.ca], DER)
    # A malformed value next to it is skipped, not fatal.
    ldap_server.add_person(address, smime=[b"\x30\x03not pkcs7", blob])
    certs = LdapSource(ldap_server.url, base=ldap_server.base_dn).certificates(address)
    assert set(certs) == {older.cert, newer.cert, pki.ca}
    found = find_certificate(address, Contacts(tmp_path), [pki.ca],
                             ldap=LdapSource(ldap_server.url, base=ldap_server.base_dn).certificates)
    assert found.source == "ldap" and found.cert == newer.cert           # the newest usable one


def test_no_entry_is_recipient_not_found(ldap_server, pki, tmp_path) -> None:
    address = fresh("nobody")
    with pytest.raises(RecipientNotFound) as e:
        find_certificate(address, Contacts(tmp_path), [pki.ca],
                         ldap=LdapSource(ldap_server.url, base=ldap_server.base_dn).certificates)
    assert e.value.exit_code == 3 and any(r.startswith("ldap:") for r in e.value.reasons)


@pytest.mark.parametrize("case", ["another address", "untrusted CA"])
def test_an_unusable_certificate_is_not_used(ldap_server, pki, tmp_path, case: str) -> None:
    address = fresh("dave")
    cert = pki.user(fresh("mallory")).cert if case == "another address" else pki.user(address, issuer="evil").cert
    ldap_server.add_person(address, certificates=[der(cert)])
    with pytest.raises(NoRecipientCertificate) as e:
        find_certificate(address, Contacts(tmp_path), [pki.ca],
                         ldap=LdapSource(ldap_server.url, base=ldap_server.base_dn).certificates)
    assert not isinstance(e.value, RecipientNotFound) and e.value.exit_code == 1
    assert any(r.startswith("ldap:") for r in e.value.reasons), e.value.reasons


def test_a_filter_injection_never_returns_another_persons_certificate(ldap_server, pki, tmp_path) -> None:
    victim = f"victim{secrets.token_hex(3)}@inject.test"
    ldap_server.add_person(victim, certificates=[der(pki.user(victim).cert)])
    source = LdapSource(ldap_server.url, base=ldap_server.base_dn)
    # Valid addresses holding filter metacharacters: escaped, they match only themselves (nothing here).
    for address in ("*@inject.test", "victim*@inject.test", f"{victim.partition('@')[0][:7]}*@inject.test",
                    "v*m*@inject.test"):
        assert source.certificates(address) == [], address
        with pytest.raises(RecipientNotFound):
            find_certificate(address, Contacts(tmp_path), [pki.ca], ldap=source.certificates)
    # Forms that would close the filter are not addresses at all: refused before anything is asked.
    for address in ("*)(mail=*@inject.test", f"x)(|(mail={victim}", "a\\2a@inject.test", "(mail=*)@inject.test"):
        with pytest.raises(UsageError):
            source.certificates(address)
    # And the escaping does not break an exact match.
    assert len(source.certificates(victim)) == 1


def test_ldaps_and_starttls_verify_the_server(ldap_server, pki, tmp_path) -> None:
    address = fresh("erin")
    user = pki.user(address)
    ldap_server.add_person(address, certificates=[der(user.cert)])
    ca = Path(ldap_server.ca_file)
    assert LdapSource(ldap_server.ldaps_url, base=ldap_server.base_dn, ca_file=ca).certificates(address) == [user.cert]
    starttls = LdapSource(ldap_server.url, base=ldap_server.base_dn, ca_file=ca, starttls=True)
    assert starttls.uses_starttls() and starttls.certificates(address) == [user.cert]

    other = tmp_path / "other-ca.pem"
    other.write_text(support.pem(pki.ca))          # not the CA of the server's TLS certificate
    for source in (LdapSource(ldap_server.ldaps_url, base=ldap_server.base_dn, ca_file=other),
                   LdapSource(ldap_server.url, base=ldap_server.base_dn, ca_file=other, starttls=True)):
        with pytest.raises(LDAPTLSFailure):
            source.certificates(address)


def test_the_host_is_matched_against_the_certificates_ip_and_dns_names(ldap_server, pki) -> None:
    """An address is checked against the IP SANs, a name against the DNS SANs, ldaps and StartTLS alike.

    ldap3 2.9 checks the name itself, from Python 3.12 with a backport that refuses every IP address: without
    autosmime's own check (exchange.ldap._verified_tls) the IP cases fail there, e.g. on Debian 13's 3.13.
    """
    from autosmime.devstack.ldap import LdapServer

    address = fresh("olga")
    user = pki.user(address)
    # Only the IP SAN: no DNS name, and a CN that is not an address (ldap3's backport would try it instead).
    with LdapServer.start(tls_names=("127.0.0.1",), tls_common_name="autosmime test LDAP server") as server:
        server.add_person(address, certificates=[der(user.cert)])
        ca = Path(server.ca_file)
        for source in (LdapSource(server.ldaps_url, base=server.base_dn, ca_file=ca),
                       LdapSource(server.url, base=server.base_dn, ca_file=ca, starttls=True)):
            assert source.certificates(address) == [user.cert], source.url
    # A DNS name (the session server's certificate names localhost and 127.0.0.1).
    ldap_server.add_person(address, certificates=[der(user.cert)])
    for url, kw in ((f"ldaps://localhost:{ldap_server.tls_port}", {}), (f"ldap://localhost:{ldap_server.port}",
                                                                          {"starttls": True})):
        source = LdapSource(url, base=ldap_server.base_dn, ca_file=Path(ldap_server.ca_file), **kw)  # type: ignore[arg-type]
        assert source.certificates(address) == [user.cert], url


def test_a_certificate_that_does_not_name_the_host_is_refused(ldap_server, pki, tmp_path) -> None:
    """Trusted chain, but the SANs name another host (a DNS name and 192.0.2.1, TEST-NET, never contacted) and
    only the CN names 127.0.0.1 (a CN never counts next to SANs, nor for an address): ldaps and StartTLS, by
    address or by name, are refused with LDAPTLSFailure saying why; the CLI says so in one line."""
    from autosmime.devstack.ldap import LdapServer

    address = fresh("piet")
    with LdapServer.start(tls_names=("ldap.example.test", "192.0.2.1"), tls_common_name="127.0.0.1") as server:
        server.add_person(address, certificates=[der(pki.user(address).cert)])
        ca = Path(server.ca_file)
        for host, url, kw in (("127.0.0.1", server.ldaps_url, {}), ("127.0.0.1", server.url, {"starttls": True}),
                              ("localhost", f"ldaps://localhost:{server.tls_port}", {}),
                              ("localhost", f"ldap://localhost:{server.port}", {"starttls": True})):
            source = LdapSource(url, base=server.base_dn, ca_file=ca, **kw)  # type: ignore[arg-type]
            with pytest.raises(LDAPTLSFailure, match=f"not valid for '{host}'"):
                source.certificates(address)
        trust = tmp_path / "ca.pem"
        trust.write_text(support.pem(pki.ca))
        r = cli("lookup", address, "--ldap", f"{server.ldaps_url}/{server.base_dn}", "--ldap-ca", str(ca),
                "--trust", str(trust), home=tmp_path / "home")
        assert r.returncode == 1 and "not valid for '127.0.0.1'" in r.stderr, r.stderr
        assert r.stderr.startswith("autosmime: ") and len(r.stderr.strip().splitlines()) == 1


def test_plain_ldap_goes_only_to_loopback_and_bad_urls_are_refused_before_connecting() -> None:
    # Default: ldap:// to a remote host is upgraded with StartTLS; plain only on loopback.
    assert LdapSource("ldap://ldap.example.test").uses_starttls()
    assert not LdapSource("ldap://127.0.0.1:389").uses_starttls()
    # Refused in the constructor, i.e. before any socket exists (192.0.2.1 is TEST-NET: never contacted).
    for url, kw in (("ldap://192.0.2.1/dc=example", {"starttls": False}),
                    ("ldap://ldap.example.test", {"starttls": False}),
                    ("http://127.0.0.1/", {}), ("ldap:///dc=example", {}), ("ldap://127.0.0.1:99999", {}),
                    ("ldaps://user:secret@ldap.example.test", {}), ("ldaps://h/dc=x??sub?(mail=*)", {}),
                    ("ldaps://ldap.example.test", {"bind_dn": "cn=x"})):
        with pytest.raises(LDAPBadURL):
            LdapSource(url, **kw)  # type: ignore[arg-type]


def test_server_down_and_bind_failures_are_typed_errors(ldap_server, pki, tmp_path) -> None:
    down = LdapSource(f"ldap://127.0.0.1:{closed_port()}", base=ldap_server.base_dn)
    with pytest.raises(LDAPUnreachable):
        down.certificates(fresh("frank"))
    with pytest.raises(LDAPUnreachable):
        find_certificate(fresh("frank"), Contacts(tmp_path), [pki.ca], ldap=down.certificates)
    wrong = LdapSource(ldap_server.url, base=ldap_server.base_dn, bind_dn=ldap_server.root_dn, password="wrong")
    with pytest.raises(LDAPError, match="refused the bind"):
        wrong.certificates(fresh("frank"))
    right = LdapSource(ldap_server.url, base=ldap_server.base_dn, bind_dn=ldap_server.root_dn,
                       password=ldap_server.root_password)
    assert right.certificates(fresh("frank")) == []
    with pytest.raises(LDAPError, match="does not exist"):
        LdapSource(ldap_server.url, base="dc=nowhere,dc=test").certificates(fresh("frank"))


def test_a_silent_server_times_out_and_many_entries_are_capped(ldap_server, pki) -> None:
    import socket

    with socket.socket() as silent:                 # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        for url, kw in ((f"ldap://127.0.0.1:{port}", {}), (f"ldaps://127.0.0.1:{port}", {}),
                        (f"ldap://127.0.0.1:{port}", {"starttls": True})):
            with pytest.raises(LDAPUnreachable, match="timed out"):
                LdapSource(url, base="dc=example,dc=test", timeout=1, **kw).certificates(fresh("ivan"))  # type: ignore[arg-type]
    # More entries than SIZE_LIMIT for one address: the server stops at the limit, what came is used.
    address = fresh("many")
    users = [pki.user(address) for _ in range(SIZE_LIMIT + 2)]
    for u in users:
        ldap_server.add_person(address, certificates=[der(u.cert)])
    certs = LdapSource(ldap_server.url, base=ldap_server.base_dn).certificates(address)
    assert len(certs) == SIZE_LIMIT and set(certs) <= {u.cert for u in users}


def test_a_broken_ldap_setting_does_not_stop_the_other_sources(ldap_server, pki, tmp_path, monkeypatch) -> None:
    from autosmime.agent import Agent
    from autosmime.agent.lookup import lookup

    address = fresh("judy")
    user = pki.user(address)
    Contacts(tmp_path / "home").add(address, user.cert, source="harvested")
    monkeypatch.delenv("AUTOSMIME_DIRECTORY", raising=False)
    monkeypatch.setenv("AUTOSMIME_LDAP", "ldap://user:secret@127.0.0.1/")    # refused: credentials in the URL
    found = lookup(Agent(tmp_path / "home"), address, extra_roots=[pki.ca])
    assert found.source == "contacts" and found.cert == user.cert
    with pytest.raises(LDAPBadURL):                                           # needed: then it is said
        lookup(Agent(tmp_path / "home"), fresh("kim"), extra_roots=[pki.ca])


def test_send_does_not_encrypt_to_a_recipient_when_ldap_is_down(ldap_server, tmp_path, monkeypatch) -> None:
    """send's choice of a recipient's certificate (agent.send.choose_recipient) when the LDAP source fails:
    no certificate, with the reason; the mail then goes signed (tests/autopilot/test_send.py end to end)."""
    from autosmime.agent import Agent
    from autosmime.agent.send import choose_recipient

    monkeypatch.delenv("AUTOSMIME_DIRECTORY", raising=False)
    monkeypatch.setenv("AUTOSMIME_LDAP", f"ldap://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AUTOSMIME_LDAP_BASE", ldap_server.base_dn)
    recipient, cert = choose_recipient(Agent(tmp_path / "home"), fresh("gina"))
    assert cert is None and "could not be reached" in (recipient.reason or ""), recipient


# --- the CLI ----------------------------------------------------------------------------------------------


def cli(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": os.getcwd(), **(env or {})}
    for name in ("AUTOSMIME_DIRECTORY", "AUTOSMIME_LDAP", "AUTOSMIME_LDAP_BASE"):
        if name not in (env or {}):
            full.pop(name, None)
    return subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), *args], capture_output=True,
                          text=True, env=full, timeout=120)


def test_cli_lookup_with_ldap_and_the_remembered_setting(ldap_server, pki, tmp_path) -> None:
    address = fresh("hugo")
    user = pki.user(address)
    ldap_server.add_person(address, certificates=[der(user.cert)])
    trust = tmp_path / "ca.pem"
    trust.write_text(support.pem(pki.ca))
    home = tmp_path / "home"

    r = cli("lookup", address, "--ldap", ldap_server.url, "--ldap-base", ldap_server.base_dn, "--trust", str(trust),
            "--json", home=home)
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["source"] == "ldap" and answer["address"] == address
    assert answer["sha256"] == support.fingerprint(user.cert)
    assert oct((home / LDAP_FILE).stat().st_mode & 0o777) == "0o600"

    missing = cli("lookup", fresh("nobody"), "--ldap", ldap_server.url, "--trust", str(trust), home=home)
    assert missing.returncode == 3, missing.stderr
    assert missing.stderr.startswith("autosmime: ") and "Traceback" not in missing.stderr

    # A second call without --ldap uses the remembered directory (base DN included).
    again = cli("lookup", address, "--trust", str(trust), "--json", home=home)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["source"] == "ldap"
    # $AUTOSMIME_LDAP overrides the remembered one (here: a server that is down): one line, exit 1.
    down = cli("lookup", address, "--trust", str(trust), home=home,
               env={"AUTOSMIME_LDAP": f"ldap://127.0.0.1:{closed_port()}"})
    assert down.returncode == 1 and "could not be reached" in down.stderr, down.stderr
    assert len(down.stderr.strip().splitlines()) == 1 and "Traceback" not in down.stderr
    # A bad URL: one line, exit 2, nothing remembered in its place.
    refused = cli("lookup", address, "--ldap", "ldap://user:pw@127.0.0.1/", "--trust", str(trust), home=home)
    assert refused.returncode == 2 and "credentials" in refused.stderr, refused.stderr
    assert json.loads((home / LDAP_FILE).read_text())["url"] == ldap_server.url
    # 'off' forgets it: the address is then found nowhere.
    off = cli("lookup", address, "--ldap", "off", "--trust", str(trust), home=home)
    assert off.returncode == 3 and not (home / LDAP_FILE).exists(), off.stderr


def test_cli_ldaps_with_a_ca_and_a_bind_is_remembered_without_the_password(ldap_server, pki, tmp_path) -> None:
    address = fresh("liam")
    user = pki.user(address)
    ldap_server.add_person(address, certificates=[der(user.cert)])
    trust = tmp_path / "ca.pem"
    trust.write_text(support.pem(pki.ca))
    password = tmp_path / "ldap-password"
    password.write_text(ldap_server.root_password + "\n")
    home = tmp_path / "home"
    r = cli("lookup", address, "--ldap", f"{ldap_server.ldaps_url}/{ldap_server.base_dn}", "--ldap-ca",
            str(ldap_server.ca_file), "--ldap-bind-dn", ldap_server.root_dn, "--ldap-password-file", str(password),
            "--trust", str(trust), "--json", home=home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["source"] == "ldap"
    remembered = (home / LDAP_FILE).read_text()
    assert ldap_server.root_password not in remembered
    assert json.loads(remembered)["password_file"] == str(password.resolve())
    again = cli("lookup", address, "--trust", str(trust), "--json", home=home)
    assert again.returncode == 0 and json.loads(again.stdout)["source"] == "ldap", again.stderr
    # The remembered bind now fails (password changed): one line, exit 1, not a traceback.
    password.write_text("wrong\n")
    refused = cli("lookup", address, "--trust", str(trust), home=home)
    assert refused.returncode == 1 and "refused the bind" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    # --ldap-ca without --ldap is a usage error.
    assert cli("lookup", address, "--ldap-ca", str(ldap_server.ca_file), home=home).returncode == 2
