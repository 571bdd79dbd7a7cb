"""Recipients' certificates from an LDAP directory (a GAL, a CA's or a company's directory), via ldap3.

    >>> from autosmime.exchange.ldap import LdapSource
    >>> source = LdapSource("ldaps://ldap.example.test/ou=people,dc=example,dc=test")
    >>> source.host, source.port, source.base
    ('ldap.example.test', 636, 'ou=people,dc=example,dc=test')
    >>> source.certificates("bob@example.test")                     # doctest: +SKIP
    [<Certificate(subject=<Name(CN=bob@example.test)>, ...)>]

The search is what Thunderbird, Outlook and mail gateways do: ``(mail=ADDRESS)``
(the value escaped, so ``*``, ``(``, ``)`` or ``\\`` in an address match only
themselves and can never widen the search), subtree under the base DN (from
``base``, else the URL's path, else the server's naming contexts), attributes
``userSMIMECertificate`` (a PKCS#7 certs-only blob, every certificate in it;
MS-OXLDAP 2.2.5.2 prefers it) and ``userCertificate;binary`` (DER), at most
SIZE_LIMIT entries, referrals never followed (they name other hosts).

Transport: ``ldaps://``, or ``ldap://`` upgraded with StartTLS, the server's
certificate verified (``ca_file``, else the system's roots) and its name
checked; plain ``ldap://`` only to a loopback address, decided before any
connection. Anonymous bind unless ``bind_dn`` and ``password`` are given (the
agent reads the password from a file; this module never looks one up).

Everything that comes back is untrusted: the caller (exchange.lookup) puts each
certificate through the same selection as any other source. Values that do not
parse are skipped. Failures are typed: LDAPBadURL, LDAPUnreachable,
LDAPTLSFailure, LDAPError.
"""

from __future__ import annotations

import math
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509

from autosmime.errors import LDAPBadURL, LDAPError, LDAPTLSFailure, LDAPUnreachable
from autosmime.mailbox.account import DEFAULT_TIMEOUT, is_loopback
from autosmime.pki.select import normalize_address

#: Thunderbird asks for 2 per address (one signing, one encryption certificate); a little room for more.
SIZE_LIMIT = 4
#: a hostile server's answer is parsed no further than this many certificates
MAX_CERTIFICATES = 64
ATTRIBUTES = ("userSMIMECertificate", "userCertificate;binary")
_PORTS = {"ldap": 389, "ldaps": 636}


@dataclass(frozen=True)
class LdapSource:
    """Where and how to search; the URL is checked here, before anything connects.

    ``starttls``: None uses StartTLS on ``ldap://`` except to loopback (plain there, as the CA client allows
    http); True always; False only to loopback (else LDAPBadURL).
    """

    url: str
    base: str | None = None
    ca_file: Path | None = None
    bind_dn: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    starttls: bool | None = None
    host: str = field(init=False)
    port: int = field(init=False)

    def __post_init__(self) -> None:
        try:
            parts = urlsplit(self.url.strip())
            port = parts.port
        except ValueError as e:
            raise LDAPBadURL(f"not an LDAP URL: {self.url!r} ({e})") from None
        if parts.scheme not in _PORTS or not parts.hostname:
            raise LDAPBadURL(f"not an LDAP URL (ldaps://HOST[:PORT][/BASE-DN] or ldap://...): {self.url!r}")
        if parts.username or parts.password:
            raise LDAPBadURL("the LDAP URL carries credentials: give a bind DN and a password file instead")
        if parts.query or parts.fragment:
            raise LDAPBadURL(f"the LDAP URL may name a host, port and base DN only, not a filter: {self.url!r}")
        if parts.scheme == "ldap" and self.starttls is False and not is_loopback(parts.hostname):
            raise LDAPBadURL(f"plain ldap:// (no StartTLS) is allowed only to loopback addresses, not {parts.hostname}")
        if (self.bind_dn is None) != (self.password is None):
            raise LDAPBadURL("a simple bind needs both a bind DN and a password")
        object.__setattr__(self, "host", parts.hostname)
        object.__setattr__(self, "port", port or _PORTS[parts.scheme])
        if self.base is None and parts.path.strip("/"):
            object.__setattr__(self, "base", unquote(parts.path.lstrip("/")))

    @property
    def scheme(self) -> str:
        return urlsplit(self.url.strip()).scheme

    def uses_starttls(self) -> bool:
        if self.scheme == "ldaps":
            return False
        return self.starttls if self.starttls is not None else not is_loopback(self.host)

    def certificates(self, address: str) -> list[x509.Certificate]:
        """Every certificate the directory holds for ``address`` (its entries' two attributes); [] when none."""
        import ldap3
        from ldap3.utils.conv import escape_filter_chars

        address = normalize_address(address)
        search_filter = f"(mail={escape_filter_chars(address)})"
        conn = self._connect()
        try:
            bases = [self.base] if self.base is not None else self._naming_contexts(conn)
            raws: list[tuple[str, bytes]] = []
            for base in bases:
                ok = _call(conn.search, base, search_filter, search_scope=ldap3.SUBTREE, attributes=list(ATTRIBUTES),
                           size_limit=SIZE_LIMIT, time_limit=max(1, int(self.timeout)), types_only=False)
                code = conn.result.get("result") if isinstance(conn.result, dict) else None
                if not ok and code not in (0, 4, 32):   # 4 sizeLimitExceeded: keep what came; 32 no such base
                    raise LDAPError(f"the LDAP search failed at {self.host}: {_describe(conn.result)}")
                if code == 32 and self.base is not None:
                    raise LDAPError(f"the LDAP base DN {self.base!r} does not exist at {self.host}")
                for entry in (conn.response or [])[:SIZE_LIMIT]:
                    if entry.get("type") != "searchResEntry":
                        continue   # referrals name other servers: never followed
                    for name, values in (entry.get("raw_attributes") or {}).items():
                        kind = name.lower().partition(";")[0]
                        if kind in ("usersmimecertificate", "usercertificate"):
                            raws += [(kind, v) for v in values if isinstance(v, bytes)]
        finally:
            _call(conn.unbind)
        return _parse(raws)

    def _connect(self) -> Any:
        import ldap3

        tls = None
        if self.scheme == "ldaps" or self.uses_starttls():
            if self.ca_file is not None and not Path(self.ca_file).is_file():
                raise LDAPBadURL(f"the LDAP CA file {self.ca_file} does not exist")
            tls = _verified_tls(self.host, self.ca_file)
        server = ldap3.Server(self.host, port=self.port, use_ssl=self.scheme == "ldaps", tls=tls,
                              connect_timeout=self.timeout, get_info=ldap3.NONE)
        auth = ldap3.SIMPLE if self.bind_dn is not None else ldap3.ANONYMOUS
        conn = ldap3.Connection(server, user=self.bind_dn, password=self.password, authentication=auth,
                                receive_timeout=max(1, math.ceil(self.timeout)), read_only=True, auto_referrals=False,
                                raise_exceptions=False, auto_bind=ldap3.AUTO_BIND_NONE)
        _call(conn.open, tls_phase=self.scheme == "ldaps", where=self.host, tls=tls)
        if self.uses_starttls() and not _call(conn.start_tls, tls_phase=True, where=self.host, tls=tls):
            _call(conn.unbind)
            raise LDAPTLSFailure(f"StartTLS with the LDAP server {self.host} failed: {_describe(conn.result)}")
        if not _call(conn.bind, where=self.host):
            _call(conn.unbind)
            raise LDAPError(f"the LDAP server {self.host} refused the bind: {_describe(conn.result)}")
        return conn

    def _naming_contexts(self, conn: Any) -> list[str]:
        import ldap3

        ok = _call(conn.search, "", "(objectClass=*)", search_scope=ldap3.BASE, attributes=["namingContexts"],
                   size_limit=1, time_limit=max(1, int(self.timeout)))
        values = []
        if ok and conn.response:
            values = conn.response[0].get("raw_attributes", {}).get("namingContexts", [])
        contexts = [v.decode("utf-8", "replace") for v in values[:8] if isinstance(v, bytes)]
        if not contexts:
            raise LDAPError(f"the LDAP server {self.host} names no base DN: give one (--ldap-base)")
        return contexts


def _verified_tls(host: str, ca_file: Path | None) -> Any:
    """An ldap3 ``Tls`` whose handshake verifies the chain and ``host`` in OpenSSL, like every other TLS here.

    ldap3 2.9 turns the context's ``check_hostname`` off and checks the name itself afterwards, with
    ``ssl.match_hostname`` up to Python 3.11 and, from 3.12 (where that is gone), with a backport that ignores
    IP SANs (an address matched only a CN, as text), so ``ldaps://127.0.0.1`` failed there. Here the context
    keeps ``check_hostname`` and gets ``server_hostname=host``: OpenSSL matches a name against the DNS SANs and
    an address against the IP SANs (never a CN), on every Python; a certificate that names neither fails the
    handshake (SSLCertVerificationError).
    """
    import ldap3

    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)   # CERT_REQUIRED + names
    except (OSError, ssl.SSLError) as e:
        raise LDAPTLSFailure(f"cannot load the LDAP CA file {ca_file}: {getattr(e, 'strerror', None) or e}") from None

    class HostVerifiedTls(ldap3.Tls):
        refusal: str | None = None

        def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
            # ldap3 calls this for ldaps:// and after a StartTLS answer; its own name check is not run.
            try:
                connection.socket = context.wrap_socket(connection.socket, server_side=False,
                                                        do_handshake_on_connect=do_handshake, server_hostname=host)
            except ssl.SSLCertVerificationError as e:
                # ldap3 re-raises this as nested text; OpenSSL's reason is kept for the message (_call)
                self.refusal = e.verify_message or e.reason
                raise

    return HostVerifiedTls(validate=ssl.CERT_REQUIRED)


def _call(method: Any, *args: Any, tls_phase: bool = False, where: str = "", tls: Any = None, **kw: Any) -> Any:
    """Run one ldap3 operation; its exceptions become typed errors (never a traceback).

    ``tls``: the connection's _verified_tls, whose ``refusal`` says why the handshake refused the certificate.
    """
    from ldap3.core import exceptions as lx

    try:
        return method(*args, **kw)
    except (lx.LDAPSSLConfigurationError, lx.LDAPCertificateError, lx.LDAPStartTLSError, ssl.SSLError) as e:
        raise LDAPTLSFailure(f"TLS with the LDAP server {where} failed: {_refusal(tls) or _short(e)}") from None
    except (lx.LDAPSocketOpenError, lx.LDAPSocketReceiveError, lx.LDAPSocketSendError, lx.LDAPResponseTimeoutError,
            lx.LDAPSessionTerminatedByServerError, lx.LDAPCommunicationError, OSError) as e:
        text = str(e).lower()
        if tls_phase and ("ssl" in text or "certificate" in text) and "timed out" not in text:
            raise LDAPTLSFailure(f"TLS with the LDAP server {where} failed: {_refusal(tls) or _short(e)}") from None
        raise LDAPUnreachable(f"the LDAP server {where} could not be reached: {_short(e)}") from None
    except lx.LDAPException as e:
        raise LDAPError(f"the LDAP server {where} gave a bad answer: {_short(e)}") from None


def _refusal(tls: Any) -> str | None:
    refusal = getattr(tls, "refusal", None)
    return f"the server's certificate was refused: {refusal}" if refusal else None


def _short(e: BaseException) -> str:
    # ldap3 nests the socket error's text in tuples: "(\"('socket ssl wrapping error: ...',)\",)"
    text = re.sub(r"^[(\"',\s]+|[)\"',\s]+$", "", " ".join(str(e).split()))
    return text[:200] or e.__class__.__name__


def _describe(result: Any) -> str:
    if isinstance(result, dict):
        return f"{result.get('description', '?')} {result.get('message', '')}".strip()
    return "no answer"


def _parse(raws: list[tuple[str, bytes]]) -> list[x509.Certificate]:
    """The certificates in the values, userSMIMECertificate first (MS-OXLDAP's preference), duplicates once."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    out: list[x509.Certificate] = []
    ordered = sorted(raws, key=lambda r: r[0] != "usersmimecertificate")
    for kind, value in ordered:
        certs: list[x509.Certificate] = []
        if kind == "usersmimecertificate":
            try:
                certs = pkcs7.load_der_pkcs7_certificates(value)
            except (ValueError, TypeError):
                certs = []
        if not certs:   # userCertificate;binary, or a bare certificate where a blob was expected
            try:
                certs = [x509.load_der_x509_certificate(value)]
            except ValueError:
                continue   # malformed: skipped, not fatal
        out += [c for c in certs if c not in out]
        if len(out) >= MAX_CERTIFICATES:
            return out[:MAX_CERTIFICATES]
    return out
