"""Drive the real S/MIME peers (OpenSSL, GnuPG gpgsm, NSS cmsutil) from tests.

    >>> from tests.interop.peers import OpenSSL, tool_version
    >>> tool_version("openssl")  # doctest: +SKIP
    (3, 0, 22)
    >>> der = OpenSSL(workdir).encrypt(b"Content-Type: text/plain\\r\\n\\r\\nhi\\r\\n", [(cert_pem, [])])  # doctest: +SKIP

Each peer works on bytes: content in, DER CMS out (or the reverse), the way
the tool itself wants it. Wrapping DER into an .eml and cutting it back out
is done by :mod:`tests.interop.mime`, because gpgsm and cmsutil only speak
CMS. A peer that refuses raises :class:`PeerRefused` carrying the tool's
own words, so a version-gated ``xfail(raises=PeerRefused, strict=True)``
only swallows the peer's refusal, never an autosmime bug.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

Version = tuple[int, ...]

#: Wall-clock cap for one peer call; the tools answer in milliseconds.
TIMEOUT = 60


class PeerRefused(Exception):
    """The peer tool rejected the input (exit status or its own failure report)."""

    def __init__(self, tool: str, what: str, detail: str) -> None:
        lines = [line for line in detail.strip().splitlines() if line.strip()]
        # The last lines carry the reason; the rest is progress chatter.
        super().__init__(f"{tool} {what}: {' | '.join(lines[-4:]) or 'failed'}")
        self.tool = tool
        self.detail = detail


class AutosmimeFailed(AssertionError):
    """autosmime exited non-zero (having kept to the failure contract)."""

    def __init__(self, argv: list[str], code: int, stderr: str) -> None:
        super().__init__(f"autosmime {' '.join(argv)} -> exit {code}: {stderr.strip()}")
        self.code = code
        self.stderr = stderr


def _run(tool: str, what: str, argv: Sequence[str | os.PathLike], *, stdin: bytes = b"",
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([str(a) for a in argv], input=stdin, capture_output=True,
                          timeout=TIMEOUT, env=env)
    if proc.returncode != 0:
        raise PeerRefused(tool, what, proc.stderr.decode(errors="replace")
                          + f"\n(exit {proc.returncode})")
    return proc


def _parse_version(text: str) -> Version:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise RuntimeError(f"no version in {text!r}")
    return tuple(int(x) for x in m.groups(default="0"))


@functools.cache
def tool_version(tool: str) -> Version | None:
    """The installed version of ``openssl``, ``gpgsm`` or ``nss``; None when missing."""
    if tool == "nss":
        if not shutil.which("cmsutil"):
            return None
        # The NSS tools print no version; the library they load does.
        name = ctypes.util.find_library("nss3") or "libnss3.so"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
        lib.NSS_GetVersion.restype = ctypes.c_char_p
        return _parse_version(lib.NSS_GetVersion().decode())
    exe = shutil.which(tool)
    if not exe:
        return None
    flag = "version" if tool == "openssl" else "--version"
    out = subprocess.run([exe, flag], capture_output=True, timeout=TIMEOUT).stdout.decode()
    return _parse_version(out.splitlines()[0] if out else "")


def version_text(tool: str) -> str:
    v = tool_version(tool)
    name = {"nss": "NSS", "gpgsm": "gpgsm", "openssl": "OpenSSL"}[tool]
    return f"{name} {'.'.join(map(str, v))}" if v else f"{name} (missing)"


@dataclass(frozen=True)
class User:
    """A test mailbox identity, written to files the peers can read."""

    name: str
    email: str
    kind: str          # "rsa" | "ec"
    key: Path          # PEM PKCS#8, unencrypted, 0600
    cert: Path         # PEM
    p12: Path          # PBES2/AES-256 (what cryptography and OpenSSL 3 write)
    p12_legacy: Path   # PBE-SHA1-3DES + SHA-1 MAC (what gpgsm 2.2.40 can import)
    password: bytes
    password_file: Path


# --- OpenSSL -----------------------------------------------------------------


class _Workdir:
    """A peer's working directory, where the inputs it reads from files are written."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._n = 0

    def _file(self, data: bytes, suffix: str) -> Path:
        self._n += 1
        path = self.dir / f"in{self._n}{suffix}"
        path.write_bytes(data)
        return path


class OpenSSL(_Workdir):
    """``openssl cms`` in DER form; S/MIME input and output through files."""

    tool = "openssl"

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)

    def cms(self, what: str, args: Sequence[str | os.PathLike], stdin: bytes = b"") -> bytes:
        return _run("openssl", what, ["openssl", "cms", *args], stdin=stdin).stdout

    def sign(self, content: bytes, user: User, *, detached: bool = True, outform: str = "DER",
             extra: Sequence[str] = ()) -> bytes:
        args = ["-sign", "-binary", "-md", "sha256", "-signer", user.cert, "-inkey", user.key,
                "-outform", outform, *extra]
        if not detached:
            args.append("-nodetach")
        return self.cms("sign", args, content)

    def verify(self, ca: Path, *, der: bytes | None = None, content: bytes | None = None,
               smime: bytes | None = None) -> bytes:
        """The signed content, after signature and chain checks against ``ca``."""
        args = ["-verify", "-CAfile", ca, "-purpose", "smimesign"]
        if smime is not None:
            # Text mode, as for mail: with -binary, OpenSSL 3.0 keeps the CR of the CRLF that
            # precedes the next delimiter in the content (CRLF mail) and the digest fails.
            return self.cms("verify", [*args, "-inform", "SMIME", "-in", self._file(smime, ".eml")])
        assert der is not None
        args += ["-binary", "-inform", "DER", "-in", self._file(der, ".p7s")]
        if content is not None:
            args += ["-content", self._file(content, ".txt")]
        return self.cms("verify", args)

    def encrypt(self, content: bytes, recipients: Sequence[tuple[Path, Sequence[str]]], *,
                cipher: str = "-aes-256-cbc", outform: str = "DER", extra: Sequence[str] = ()) -> bytes:
        """``recipients``: (cert, its -keyopt values) pairs."""
        args = ["-encrypt", "-binary", cipher, "-outform", outform, *extra]
        for cert, keyopts in recipients:
            args += ["-recip", cert]
            for opt in keyopts:
                args += ["-keyopt", opt]
        return self.cms("encrypt", args, content)

    def decrypt(self, user: User, *, der: bytes | None = None, smime: bytes | None = None) -> bytes:
        args = ["-decrypt", "-binary", "-inkey", user.key, "-recip", user.cert]
        if smime is not None:
            return self.cms("decrypt", [*args, "-inform", "SMIME", "-in", self._file(smime, ".eml")])
        assert der is not None
        return self.cms("decrypt", [*args, "-inform", "DER", "-in", self._file(der, ".p7m")])


# --- GnuPG gpgsm --------------------------------------------------------------


class Gpgsm(_Workdir):
    """gpgsm in a throwaway GNUPGHOME: import by PKCS#12, trust the test CA."""

    tool = "gpgsm"

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        home.chmod(0o700)
        (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
        # No CRLs or dirmngr: the test CA publishes none and the network is off limits.
        (home / "gpgsm.conf").write_text("disable-crl-checks\ndisable-dirmngr\n")
        self.env = {**os.environ, "GNUPGHOME": str(home)}
        self._imported: dict[str, PeerRefused | None] = {}
        super().__init__(home)

    def _gpgsm(self, what: str, args: Sequence[str | os.PathLike], stdin: bytes = b"",
               ) -> subprocess.CompletedProcess[bytes]:
        return _run("gpgsm", what, ["gpgsm", "--batch", "--status-fd", "2", *args],
                    stdin=stdin, env=self.env)

    def trust(self, ca_pem: Path) -> None:
        self._gpgsm("import CA", ["--import", ca_pem])
        out = self._gpgsm("list CA", ["--with-colons", "--list-keys"]).stdout.decode()
        # trustlist.txt lives with the agent; "S" = trusted for S/MIME, "relax" = accept our
        # CA profile without gpgsm's stricter qualified-certificate checks.
        fprs = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]
        fpr = self._fingerprint_of(ca_pem)
        assert fpr in fprs, (fpr, fprs)
        (self.home / "trustlist.txt").write_text(f"{fpr} S relax\n")

    @staticmethod
    def _fingerprint_of(pem: Path) -> str:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        cert = x509.load_pem_x509_certificate(pem.read_bytes())
        return cert.fingerprint(hashes.SHA1()).hex().upper()

    def import_p12(self, p12: Path, password: bytes, email: str) -> None:
        """Import a PKCS#12 file; gpgsm may exit 0 without the key, so look for it afterwards.

        One retry: on a loaded machine the first call can lose the race with the
        gpg-agent it autostarts (seen once in a full run), which is not what we test.
        """
        for attempt in range(2):
            try:
                self._gpgsm("import PKCS#12", ["--pinentry-mode", "loopback", "--passphrase-fd", "0",
                                               "--import", p12], stdin=password + b"\n")
            except PeerRefused:
                if attempt:
                    raise
            listing = self._gpgsm("list secret keys", ["--with-colons", "--list-secret-keys"]).stdout.decode()
            blocks = re.split(r"\n(?=cr[ts]:)", listing)
            if any(b.startswith("crs:") and f"<{email}>" in b for b in blocks):
                return
            time.sleep(0.5)
        raise PeerRefused("gpgsm", "import PKCS#12", f"no secret key for {email} after import")

    def add_user(self, user: User) -> None:
        """Import the user's legacy (3DES) PKCS#12 once; a refusal is remembered and re-raised."""
        if user.email not in self._imported:
            try:
                self.import_p12(user.p12_legacy, user.password, user.email)
                self._imported[user.email] = None
            except PeerRefused as e:
                self._imported[user.email] = e
        if (err := self._imported[user.email]) is not None:
            raise err

    def sign(self, content: bytes, user: User, *, detached: bool = True) -> bytes:
        self.add_user(user)
        out = self.home / f"sig{self._n}.der"
        self._gpgsm("sign", ["--pinentry-mode", "loopback", "--passphrase-fd", "0", "--include-certs", "-1",
                             "-u", user.email, "--detach-sign" if detached else "--sign",
                             "--output", out, self._file(content, ".txt")], stdin=user.password + b"\n")
        return out.read_bytes()

    def verify(self, der: bytes, content: bytes | None = None) -> bytes:
        """The signed content; gpgsm exits 0 on some failures, so read its status lines."""
        args = ["--verify"]
        out = self.home / f"verified{self._n}.txt"
        if content is None:
            args += ["--output", out, self._file(der, ".p7m")]
        else:
            args += [self._file(der, ".p7s"), self._file(content, ".txt")]
        proc = self._gpgsm("verify", args)
        status = proc.stderr.decode(errors="replace")
        if "[GNUPG:] GOODSIG" not in status or "[GNUPG:] VALIDSIG" not in status \
                or "TRUST_FULLY" not in status:
            raise PeerRefused("gpgsm", "verify", status)
        return content if content is not None else out.read_bytes()

    def encrypt(self, content: bytes, users: Sequence[User], *, cipher: str | None = None) -> bytes:
        for user in users:
            self.add_user(user)
        out = self.home / f"enc{self._n}.der"
        args = ["--encrypt", "--output", out]
        if cipher:
            args += ["--cipher-algo", cipher]
        for user in users:
            args += ["-r", user.email]
        self._gpgsm("encrypt", [*args, self._file(content, ".txt")])
        return out.read_bytes()

    def decrypt(self, der: bytes, user: User) -> bytes:
        self.add_user(user)
        out = self.home / f"dec{self._n}.txt"
        self._gpgsm("decrypt", ["--pinentry-mode", "loopback", "--passphrase-fd", "0", "--output", out,
                                "--decrypt", self._file(der, ".p7m")], stdin=user.password + b"\n")
        return out.read_bytes()

    def close(self) -> None:
        subprocess.run(["gpgconf", "--kill", "all"], env=self.env, capture_output=True, timeout=TIMEOUT)


# --- NSS (cmsutil: Thunderbird's CMS engine) ----------------------------------


class Nss(_Workdir):
    """An NSS sql: database with the users' PKCS#12 files and the test CA trusted."""

    tool = "nss"

    def __init__(self, dbdir: Path) -> None:
        dbdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        super().__init__(dbdir)
        self.db = f"sql:{dbdir}"
        _run("certutil", "create db", ["certutil", "-N", "-d", self.db, "--empty-password"])

    def trust(self, ca_pem: Path) -> None:
        _run("certutil", "trust CA", ["certutil", "-A", "-d", self.db, "-n", "interop-ca",
                                      "-t", "C,C,C", "-a", "-i", ca_pem])

    def add_user(self, user: User) -> None:
        _run("pk12util", "import", ["pk12util", "-i", user.p12, "-d", self.db,
                                    "-w", user.password_file, "-K", ""])

    def _cmsutil(self, what: str, args: Sequence[str | os.PathLike]) -> bytes:
        return _run("cmsutil", what, ["cmsutil", "-d", self.db, *args]).stdout

    def sign(self, content: bytes, user: User, *, detached: bool = True) -> bytes:
        # -G signingTime, -P SMIMECapabilities: what Thunderbird puts in.
        args = ["-S", "-N", user.name, "-H", "SHA256", "-G", "-P", "-i", self._file(content, ".txt")]
        if detached:
            args.append("-T")
        return self._cmsutil("sign", args)

    def verify(self, der: bytes, content: bytes | None = None) -> bytes:
        """The signed content; cmsutil exits 0 on a bad signature, so read its report."""
        src = self._file(der, ".p7m")
        detached = ["-c", self._file(content, ".txt")] if content is not None else []
        # -h prints the report (and exit 0 even on a bad signature); the content is read in
        # a second pass because the report has no separator from it.
        report = self._cmsutil("verify", ["-D", "-n", "-h", "2", "-i", src, *detached]).decode(errors="replace")
        statuses = re.findall(r"signer\d+\.status=(\w+)", report)
        if not statuses or any(s != "GoodSignature" for s in statuses):
            raise PeerRefused("cmsutil", "verify", report)
        return content if content is not None else self._cmsutil("verify", ["-D", "-i", src])

    def encrypt(self, content: bytes, users: Sequence[User]) -> bytes:
        return self._cmsutil("encrypt", ["-E", "-r", ",".join(u.email for u in users),
                                         "-i", self._file(content, ".txt")])

    def decrypt(self, der: bytes, user: User) -> bytes:
        # The key is found by the recipient identifier; ``user`` only documents intent.
        return self._cmsutil("decrypt", ["-D", "-i", self._file(der, ".p7m")])
