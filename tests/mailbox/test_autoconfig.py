"""Mail settings from the address alone: bundled entries, the domain's autoconfig file over real
loopback HTTPS, and RFC 6186 SRV records parsed from a real zone file."""

from __future__ import annotations

import datetime as dt
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from autosmime.errors import DiscoveryError
from autosmime.mailbox.autoconfig import (
    MailSettings,
    ServerSetting,
    SrvRecord,
    discover,
    https_getter,
    parse_clientconfig,
)

CONFIG = b"""<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="example.test"><domain>example.test</domain>
 <incomingServer type="pop3"><hostname>pop.example.test</hostname><port>995</port><socketType>SSL</socketType></incomingServer>
 <incomingServer type="imap"><hostname>plain.example.test</hostname><port>143</port><socketType>plain</socketType></incomingServer>
 <incomingServer type="imap"><hostname>imap.%EMAILDOMAIN%</hostname><port>993</port><socketType>SSL</socketType>
  <username>%EMAILLOCALPART%</username><authentication>password-cleartext</authentication></incomingServer>
 <outgoingServer type="smtp"><hostname>oauth.example.test</hostname><port>465</port><socketType>SSL</socketType>
  <authentication>OAuth2</authentication></outgoingServer>
 <outgoingServer type="smtp"><hostname>smtp.example.test</hostname><port>587</port><socketType>STARTTLS</socketType>
  <username>%EMAILADDRESS%</username></outgoingServer>
</emailProvider></clientConfig>"""


def test_bundled_provider_by_domain_case_insensitively():
    found = discover("Someone@GoogleMail.com", sources=("bundled",))
    assert found == MailSettings(ServerSetting("imap.gmail.com", 993, "tls", "Someone@GoogleMail.com"),
                                 ServerSetting("smtp.gmail.com", 465, "tls", "Someone@GoogleMail.com"), "bundled")
    # the most common pair: IMAP over TLS, submission with STARTTLS
    gmx = discover("a@gmx.de", sources=("bundled",))
    assert (gmx.imap.security, gmx.smtp.port, gmx.smtp.security) == ("tls", 587, "starttls")


def test_a_subdomain_is_not_its_parent_provider():
    with pytest.raises(DiscoveryError, match="tried: bundled"):
        discover("a@mail.gmail.com.evil.test", sources=("bundled",))


def test_clientconfig_prefers_secure_servers_and_skips_oauth_only_and_pop():
    found = parse_clientconfig(CONFIG, "bob@example.test", "autoconfig")
    assert found is not None
    assert found.imap == ServerSetting("imap.example.test", 993, "tls", "bob")
    assert found.smtp == ServerSetting("smtp.example.test", 587, "starttls", "bob@example.test")


@pytest.mark.parametrize("data", [
    b"not xml",
    b"<clientConfig/>",
    b"<other><emailProvider/></other>",
    CONFIG.replace(b"<port>993</port>", b"<port>99999</port>").replace(b"<port>143</port>", b"<port>x</port>"),
    CONFIG + b" " * (256 * 1024),
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
    b'<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">'
    b'<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">]>'
    b"<clientConfig><emailProvider><domain>&h;</domain></emailProvider></clientConfig>",
])
def test_unusable_files_are_skipped_not_half_used(data):
    assert parse_clientconfig(data, "bob@example.test", "autoconfig") is None


@pytest.fixture
def https_site(tmp_path: Path) -> Iterator[tuple[dict[str, bytes], dict]]:
    """A real HTTPS server on loopback for autoconfig.example.test and example.test."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "autosmime test site")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("autoconfig.example.test"),
                                                        x509.DNSName("example.test")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    pages: dict[str, bytes] = {}
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(f"{self.headers['Host']}{self.path}")
            body = pages.get(f"{self.headers['Host']}{self.path.split('?')[0]}")
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    get = https_getter(cafile=str(tmp_path / "cert.pem"),
                       connect_to={"autoconfig.example.test": ("127.0.0.1", port), "example.test": ("127.0.0.1", port)})
    try:
        yield pages, {"get": get, "seen": seen}
    finally:
        server.shutdown()
        server.server_close()


def test_domain_autoconfig_file_over_verified_https(https_site):
    pages, env = https_site
    pages["autoconfig.example.test/mail/config-v1.1.xml"] = CONFIG
    found = discover("bob@example.test", sources=("autoconfig",), https_get=env["get"])
    assert found.source == "autoconfig" and found.imap.host == "imap.example.test"
    assert env["seen"][0] == "autoconfig.example.test/mail/config-v1.1.xml?emailaddress=bob%40example.test"


def test_well_known_file_when_the_autoconfig_host_has_none(https_site):
    pages, env = https_site
    pages["example.test/.well-known/autoconfig/mail/config-v1.1.xml"] = CONFIG
    found = discover("bob@example.test", sources=("autoconfig",), https_get=env["get"])
    assert found.smtp.host == "smtp.example.test" and len(env["seen"]) == 2


def test_a_certificate_for_another_name_is_refused(https_site, tmp_path):
    pages, env = https_site
    pages["autoconfig.example.test/mail/config-v1.1.xml"] = CONFIG
    wrong = https_getter(cafile=str(tmp_path / "cert.pem"), connect_to={"autoconfig.other.test": ("127.0.0.1", 1)})
    with pytest.raises(DiscoveryError):
        discover("bob@other.test", sources=("autoconfig",), https_get=wrong)
    with pytest.raises(ValueError, match="https only"):
        env["get"]("http://autoconfig.example.test/mail/config-v1.1.xml")


ZONE = """$ORIGIN example.test.
$TTL 300
@ IN SOA ns hostmaster 1 3600 600 86400 300
@ IN NS ns
_imaps._tcp IN SRV 0 0 0 .
_imap._tcp IN SRV 10 5 143 imap-b.example.test.
_imap._tcp IN SRV 5 1 1143 imap-a.example.test.
_submissions._tcp IN SRV 0 1 465 smtp.example.test.
_submission._tcp IN SRV 0 1 587 other.example.test.
"""


def _zone_resolver(text: str):
    zone = dns.zone.from_text(text, relativize=False)

    def resolve(name: str) -> list[SrvRecord]:
        node = zone.get_node(name)
        rdataset = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.SRV) if node is not None else None
        return [SrvRecord(r.priority, r.weight, r.port, r.target.to_text()) for r in rdataset or ()]

    return resolve


def test_rfc6186_srv_records_with_priorities_and_the_not_offered_dot():
    found = discover("bob@example.test", sources=("srv",), resolve_srv=_zone_resolver(ZONE))
    assert found.imap == ServerSetting("imap-a.example.test", 1143, "starttls", "bob@example.test")
    assert found.smtp == ServerSetting("smtp.example.test", 465, "tls", "bob@example.test")


def test_sources_in_order_and_a_clear_error_when_none_knows():
    resolver = _zone_resolver(ZONE)
    assert discover("a@gmail.com", resolve_srv=resolver, https_get=lambda url: b"").source == "bundled"
    with pytest.raises(DiscoveryError, match=r"no mail settings found for nowhere\.test \(tried: bundled, autoconfig, srv\)"):
        discover("a@nowhere.test", resolve_srv=resolver, https_get=lambda url: b"")
    with pytest.raises(DiscoveryError, match="not an email address"):
        discover("nobody", sources=("bundled",))
