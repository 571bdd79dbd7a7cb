"""A private, throw-away OpenLDAP server (slapd) on loopback ports, for tests of the LDAP lookup source.

    >>> from autosmime.devstack.ldap import LdapServer, slapd_available
    >>> with LdapServer.start() as server:                               # doctest: +SKIP
    ...     server.add_person("bob@example.test", certificates=[cert_der])
    ...     server.url, server.base                                      # doctest: +SKIP
    ('ldap://127.0.0.1:38911', 'dc=example,dc=test')

The binaries are Debian's ``slapd`` and the schemas ``/etc/ldap/schema``
(core, cosine, inetorgperson: ``mail``, ``userCertificate``,
``userSMIMECertificate``), both from the ``slapd`` package (scripts/install.sh
adds it). The server is configured by a slapd.conf in a temporary directory:
one mdb database under ``dc=example,dc=test``, readable anonymously, written
through a random root password that only this object knows. It listens on
127.0.0.1 only: ``ldap://`` (with StartTLS) and ``ldaps://`` on two free ports,
with a server certificate from autosmime.devstack._tls whose CA is ``ca_pem``
(for localhost and 127.0.0.1 unless ``tls_names`` says otherwise).
slapd runs in the foreground (``-d 0``) as the current user (root in CI is fine:
it binds only unprivileged ports) and is stopped by its PID.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autosmime.errors import AutosmimeError

SUFFIX = "dc=example,dc=test"
SCHEMAS = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")


class SlapdError(AutosmimeError):
    """The private slapd could not be started or used."""


def _slapd() -> str | None:
    return shutil.which("slapd") or next((p for p in ("/usr/sbin/slapd",) if os.access(p, os.X_OK)), None)


def slapd_available() -> bool:
    """True when slapd and the schemas it needs are installed."""
    return _slapd() is not None and all((SCHEMAS / f"{s}.schema").exists()
                                        for s in ("core", "cosine", "inetorgperson"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LdapServer:
    """A running private slapd. Use :meth:`start`, then :meth:`stop` (or a ``with`` block)."""

    def __init__(self, base: Path, port: int, tls_port: int, ca_pem: bytes, root_password: str) -> None:
        self.base = base
        self.port = port
        self.tls_port = tls_port
        self.ca_pem = ca_pem
        self.ca_file = base / "ca.pem"
        self.base_dn = SUFFIX
        self.root_dn = f"cn=admin,{SUFFIX}"
        self.root_password = root_password    # the only writer; tests use it to try a simple bind
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Plain ``ldap://`` on loopback (StartTLS offered)."""
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @classmethod
    def start(cls, timeout: float = 30.0, tls_names: Sequence[str] = ("localhost", "127.0.0.1"),
              tls_common_name: str | None = None) -> LdapServer:
        """``tls_names`` (SANs) and ``tls_common_name``: the server's TLS certificate (make_server_tls)."""
        from autosmime._files import write_private
        from autosmime.devstack._tls import make_server_tls

        slapd = _slapd()
        if slapd is None or not slapd_available():
            raise SlapdError("slapd is not installed (apt-get install slapd ldap-utils)")
        base = Path(tempfile.mkdtemp(prefix="autosmime-ldap-"))
        os.chmod(base, 0o700)
        ca_pem, cert_pem, key_pem = make_server_tls(tls_names, tls_common_name)
        server = cls(base, _free_port(), _free_port(), ca_pem, secrets.token_urlsafe(24))
        try:
            (base / "data").mkdir(mode=0o700)
            server.ca_file.write_bytes(ca_pem)
            (base / "server.pem").write_bytes(cert_pem)
            write_private(base / "server.key", key_pem)
            includes = "".join(f"include {SCHEMAS / s}.schema\n" for s in ("core", "cosine", "inetorgperson"))
            conf = (f"{includes}"
                    f"pidfile {base}/slapd.pid\nargsfile {base}/slapd.args\n"
                    f"modulepath {MODULES}\nmoduleload back_mdb\n"
                    f"TLSCACertificateFile {server.ca_file}\nTLSCertificateFile {base}/server.pem\n"
                    f"TLSCertificateKeyFile {base}/server.key\n"
                    f"database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{server.root_dn}\"\n"
                    f"rootpw {server.root_password}\ndirectory {base}/data\nmaxsize 67108864\n"
                    "index mail eq\naccess to * by * read\n")
            write_private(base / "slapd.conf", conf.encode())
            urls = f"{server.url}/ {server.ldaps_url}/"
            log = open(base / "slapd.log", "wb")
            server._proc = subprocess.Popen([slapd, "-d", "0", "-h", urls, "-f", str(base / "slapd.conf")],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            server._wait(timeout)
            server._add(SUFFIX, ["top", "dcObject", "organization"], {"dc": "example", "o": "example"})
            server._add(f"ou=people,{SUFFIX}", ["top", "organizationalUnit"], {"ou": "people"})
        except BaseException:
            server.stop()
            raise
        return server

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                tail = (self.base / "slapd.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise SlapdError(f"slapd exited with {self._proc.returncode}: {' / '.join(tail)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1), \
                        socket.create_connection(("127.0.0.1", self.tls_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise SlapdError(f"slapd did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s")

    def _connection(self) -> Any:
        import ldap3

        server = ldap3.Server("127.0.0.1", port=self.port, connect_timeout=10)
        return ldap3.Connection(server, user=self.root_dn, password=self.root_password, auto_bind=True,
                                receive_timeout=10, raise_exceptions=True)

    def _add(self, dn: str, classes: list[str], attributes: dict[str, object]) -> None:
        conn = self._connection()
        try:
            conn.add(dn, classes, attributes)
        finally:
            conn.unbind()

    def add_person(self, mail: str, *, certificates: Sequence[bytes] = (), smime: Sequence[bytes] = (),
                   uid: str | None = None) -> str:
        """An inetOrgPerson with ``mail``, DER certificates in ``userCertificate;binary`` and PKCS#7 blobs in
        ``userSMIMECertificate``; returns its DN. Values are stored as given (malformed ones too: tests need them).
        """
        uid = uid or secrets.token_hex(6)
        attributes: dict[str, object] = {"cn": mail, "sn": mail.partition("@")[0] or "x", "mail": mail, "uid": uid}
        if certificates:
            attributes["userCertificate;binary"] = list(certificates)
        if smime:
            attributes["userSMIMECertificate"] = list(smime)
        dn = f"uid={uid},ou=people,{SUFFIX}"
        self._add(dn, ["top", "person", "organizationalPerson", "inetOrgPerson"], attributes)
        return dn

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> LdapServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

