"""Text from the provider never reaches the terminal or the device state with control, escape or bidi characters.

server_text is the one filter; the hostile-server tests show it is applied where IMAP and SMTP text enters
(error messages) and so where it is stored (the reason of a pending backup) and printed (`keys`, errors).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator

import pytest

from autosmime.errors import AuthenticationFailed, MailboxError
from autosmime.mailbox.account import Account
from autosmime.mailbox.imap import ImapMailbox
from autosmime.mailbox.smtp import check_login
from autosmime.mailbox.text import MAX_SERVER_TEXT, server_text

pytestmark = pytest.mark.timeout(120)

# What a hostile provider puts in its replies: OSC 52 (write the clipboard), clear screen, colour, a window
# title, a DCS string, C1 CSI and NEL, bidi overrides and isolates, zero-width and line separators, CR/LF.
HOSTILE = (b"\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1b[1;31mWrong\rpassword\x1b]0;pwned\x1b\\ "
           b"\xc2\x9b31m\xc2\x85x \xe2\x80\xaegnp.exe\xe2\x80\xac \xe2\x81\xa6y\xe2\x81\xa9\xe2\x80\x8b"
           b"\xe2\x80\xa8\x1bP+q\x1b\\\x07\x00\x7f end")


def assert_safe(text: str) -> None:
    bad = [f"U+{ord(c):04X}" for c in text if unicodedata.category(c)[0] == "C" or c in "\u2028\u2029"]
    assert not bad, (bad, text)
    assert "\x1b" not in text and "\n" not in text and "\r" not in text


# --- the function -------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain text", "plain text"),
    ("\x1b[31mred\x1b[0m", "red"),                          # CSI SGR
    ("\x1b[2J\x1b[Hclear", "clear"),                        # clear screen, cursor home
    ("a\x1b]0;title\x07b", "ab"),                           # OSC ended by BEL
    ("a\x1b]52;c;ZXZpbA==\x1b\\b", "ab"),                   # OSC 52 clipboard write, ended by ST
    ("a\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "alink"),   # OSC 8 hyperlink
    ("a\x1bP+q544e\x1b\\b", "ab"),                          # DCS
    ("a\x1b]0;never ended", "a"),                           # unterminated OSC: dropped to the end
    ("a\x1b(Bb\x1b7c\x1bcd", "abcd"),                       # charset designation, save cursor, reset
    ("a\x9b31mb\x9d0;t\x9cc", "abc"),                       # C1 CSI and OSC ... ST
    ("line1\r\nline2\nline3\rline4", "line1 line2 line3 line4"),
    ("tab\there\x0bvt\x0cff", "tab here vt ff"),
    ("nel\x85sep\u2028para\u2029end", "nel sep para end"),
    ("\x00nul\x07bel\x08bs\x7fdel\x80\x9f", "nulbelbsdel"),
    ("evil\u202egnp.exe\u202c", "evilgnp.exe"),              # RLO ... PDF
    ("\u2066iso\u2069\u2067late\u2069\u2068fs\u2069", "isolatefs"),
    ("\u200eltr\u200frtl\u061calm", "ltrrtlalm"),
    ("zero\u200bwidth\ufeffbom", "zerowidthbom"),
    ("  many   spaces  ", "many spaces"),
    ("unicode: grüße, 日本, ünïcödé", "unicode: grüße, 日本, ünïcödé"),   # ordinary text stays
])
def test_server_text(raw, shown):
    assert server_text(raw) == shown
    assert server_text(raw.encode("utf-8")) == shown


def test_invalid_utf8_and_8bit_controls_in_bytes():
    out = server_text(b"ok \xff\xfe \x9b31m \x1b[1mbold")
    assert_safe(out)
    assert out.startswith("ok ") and out.endswith("31m bold")


def test_hostile_sample():
    out = server_text(HOSTILE)
    assert_safe(out)
    assert out == "Wrong password x gnp.exe y end"


def test_length_is_bounded():
    assert len(server_text("x" * 100_000)) == MAX_SERVER_TEXT
    assert server_text("x" * 100_000).endswith("…")
    assert server_text("abcdef", limit=4) == "abc…"


def test_fuzz_every_code_point_class():
    """Whatever the input, the output is one line of printable characters."""
    import random

    rng = random.Random(10)
    pool = [chr(c) for c in range(0, 0x250)] + [chr(c) for c in range(0x2000, 0x2070)] + ["\ufeff", "\ufffd"]
    for _ in range(500):
        assert_safe(server_text("".join(rng.choice(pool) for _ in range(rng.randrange(1, 80)))))


# --- where server text enters -------------------------------------------------------------------


class ScriptedServer:
    """A loopback server that answers each line the client sends with ``reply(line)`` (None: close)."""

    def __init__(self, banner: bytes, reply: Callable[[bytes], bytes | None]) -> None:
        self._banner, self._reply = banner, reply
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        for _ in range(2000):  # bounded: ~400 s at most, and the tests stop it long before
            if self._stop.is_set():
                return
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                conn.sendall(self._banner)
                f = conn.makefile("rb")
                for line in f:
                    answer = self._reply(line)
                    if answer is None:
                        return
                    conn.sendall(answer)
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._server.close()


def _imap_reply(line: bytes) -> bytes | None:
    tag, _, rest = line.partition(b" ")
    command = rest.split(b" ", 1)[0].strip().upper()
    if command == b"CAPABILITY":
        return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n"
    if command == b"LOGOUT":
        return b"* BYE\r\n" + tag + b" OK bye\r\n"
    return tag + b" NO [AUTHENTICATIONFAILED] " + HOSTILE + b"\r\n"


def _smtp_reply(line: bytes) -> bytes | None:
    command = line.split(b" ", 1)[0].strip().upper()
    if command == b"EHLO":
        return b"250-hostile.test\r\n250 AUTH PLAIN LOGIN\r\n"
    if command == b"QUIT":
        return None
    # a multi-line reply: smtplib joins its lines with LF
    return b"535-5.7.8 " + HOSTILE + b"\r\n535 5.7.8 \x1b[5mblink\x1b[0m\r\n"


@pytest.fixture
def hostile_imap() -> Iterator[ScriptedServer]:
    server = ScriptedServer(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] " + HOSTILE + b"\r\n", _imap_reply)
    yield server
    server.stop()


@pytest.fixture
def hostile_smtp() -> Iterator[ScriptedServer]:
    server = ScriptedServer(b"220 hostile.test ESMTP " + HOSTILE + b"\r\n", _smtp_reply)
    yield server
    server.stop()


def _account(imap_port: int, smtp_port: int = 1) -> Account:
    return Account("a@example.test", "127.0.0.1", imap_port, "127.0.0.1", smtp_port, security="plain", timeout=5)


def test_imap_error_text_is_cleaned(hostile_imap):
    with pytest.raises(AuthenticationFailed) as e:
        ImapMailbox.connect(_account(hostile_imap.port), "pw")
    assert "Wrong password" in str(e.value)
    assert_safe(str(e.value))


def test_smtp_error_text_is_cleaned(hostile_smtp):
    with pytest.raises(MailboxError) as e:
        check_login(_account(1, hostile_smtp.port), "pw")
    assert "Wrong password" in str(e.value) and "blink" in str(e.value)
    assert_safe(str(e.value))


def test_smtp_refusal_at_the_greeting_is_cleaned():
    server = ScriptedServer(b"554-" + HOSTILE + b"\r\n554 go away\x1b[2J\r\n", lambda line: None)
    try:
        with pytest.raises(MailboxError) as e:
            check_login(_account(1, server.port), "pw")
    finally:
        server.stop()
    assert "554" in str(e.value) and "go away" in str(e.value)
    assert_safe(str(e.value))


def _cli(home, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autosmime", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_pending_backup_reason_is_stored_and_shown_clean(hostile_imap, tmp_path):
    """The provider's text becomes the pending reason: stored and printed without its escapes."""
    from autosmime.mailbox.account import save_account
    from autosmime.pki.pkcs12 import build_pfx
    from autosmime.pki.profiles import make_ca, make_mailbox_cert, new_key

    home = tmp_path / "home"
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    account = _account(hostile_imap.port)
    account.password_file = str(pw)
    save_account(home, account)
    ca_key, ca = make_ca("sanitize CA", new_key("ec"))
    key = new_key("ec")
    p12 = tmp_path / "k.p12"
    p12.write_bytes(build_pfx([(key, make_mailbox_cert("a@example.test", key.public_key(), ca_key, ca), (ca,))],
                              b"in", iterations=1000))
    (tmp_path / "in").write_text("in\n")
    r = _cli(home, "import", str(p12), "--password-file", str(tmp_path / "in"))
    assert_safe(r.stderr.replace("\n", " ").strip())
    r = _cli(home, "backup")
    assert r.returncode != 0 and "Wrong password" in r.stderr, r.stderr
    assert_safe(r.stderr.strip())
    state = json.loads(_cli(home, "keys", "--json").stdout)["backup"]
    assert state["backup_pending"] and "Wrong password" in state["backup_pending_reason"]
    assert_safe(state["backup_pending_reason"])
    r = _cli(home, "keys")
    assert r.returncode == 0 and "Wrong password" in r.stdout
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout


def test_a_reason_stored_before_the_cleaning_is_shown_clean(tmp_path):
    """A state file written by an earlier version may hold the raw text: `keys` and `status` clean it on the way out."""
    from autosmime.vault.store import Vault

    home = tmp_path / "home"
    for command in ("keys", "status"):
        Vault.open(home).update_state(backup_pending=True, backup_pending_reason=HOSTILE.decode("utf-8"))
        r = _cli(home, command)
        assert r.returncode == 0 and "Wrong password" in r.stdout, r.stdout + r.stderr
        assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\x9b" not in r.stdout


def _clientconfig(host: str, username: str = "%EMAILADDRESS%") -> bytes:
    return f"""<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="example.org">
  <incomingServer type="imap"><hostname>{host}</hostname><port>993</port><socketType>SSL</socketType>
    <username>{username}</username><authentication>password-cleartext</authentication></incomingServer>
  <outgoingServer type="smtp"><hostname>smtp.%EMAILDOMAIN%</hostname><port>465</port><socketType>SSL</socketType>
    <username>%EMAILADDRESS%</username><authentication>password-cleartext</authentication></outgoingServer>
</emailProvider></clientConfig>""".encode()


@pytest.mark.parametrize(("host", "username"), [
    ("imap.example.org\x1b]0;pwned\x07", "%EMAILADDRESS%"),
    ("imap.example.org\u202egro", "%EMAILADDRESS%"),
    ("imap example.org", "%EMAILADDRESS%"),
    ("imap.example.org", "%EMAILADDRESS%\x1b[2J"),
    ("imap.example.org", "user\u2066name"),
])
def test_a_providers_autoconfig_with_escapes_is_not_used(host, username):
    """Provider-supplied server names and user names are stored in account.json and shown: refused when unclean."""
    from autosmime.mailbox.autoconfig import parse_clientconfig

    assert parse_clientconfig(_clientconfig("imap.%EMAILDOMAIN%"), "a@example.org", "autoconfig") is not None
    assert parse_clientconfig(_clientconfig(host, username), "a@example.org", "autoconfig") is None


def test_a_cas_problem_text_is_cleaned():
    """The ACME CA's problem documents reach the terminal the same way as a mail server's replies."""
    from acme import messages

    from autosmime.enroll.client import _problem, _short

    err = messages.Error(typ="urn:ietf:params:acme:error:malformed", detail=HOSTILE.decode("utf-8"))
    shown = str(_problem(err, "ordering"))
    assert "Wrong password" in shown
    assert_safe(shown)
    assert_safe(_short(ValueError(HOSTILE.decode("utf-8"))))
