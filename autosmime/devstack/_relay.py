"""SMTP AUTH relay into Dovecot LMTP: the mail stack's SMTP server when Postfix cannot run.

    $ python -m autosmime.devstack._relay DIR/relay.json     # started by MailStack, stopped by SIGTERM

Three listeners on 127.0.0.1: SMTP with STARTTLS, SMTPS (implicit TLS), and
an AUTH-less port for Dovecot's submission service. Logins are checked
against the Dovecot users file; each recipient is delivered in its own LMTP
transaction (smtplib's LMTP misreads per-recipient replies otherwise).
Unlike Postfix, unknown recipients are refused at RCPT time (550).
"""

from __future__ import annotations

import json
import signal
import smtplib
import ssl
import sys
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class _Users:
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def table(self) -> dict[str, str]:
        # Re-read every time: MailStack adds users while running.
        users = {}
        for line in self.path.read_text().splitlines():
            name, _, rest = line.partition(":")
            users[name] = rest.split(":", 1)[0].removeprefix("{PLAIN}")
        return users


class _Handler:
    def __init__(self, users: _Users, domain: str, lmtp_port: int, routes: dict[str, int] | None = None,
                 dkim: dict | None = None) -> None:
        self.users, self.domain, self.lmtp_port = users, domain, lmtp_port
        self.routes = {d.lower(): int(p) for d, p in (routes or {}).items()}   # domain -> SMTP port
        self.dkim = dkim                   # {"key": PEM path, "selector": ...}: sign our own mail
        self.dkim_pem = Path(dkim["key"]).read_bytes() if dkim else None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local, _, domain = address.rpartition("@")
        if domain.lower() in self.routes:
            envelope.rcpt_tos.append(address)
            return "250 OK"
        if domain.lower() != self.domain or local.split("+")[0].lower() not in self.users.table():
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content
        if self.dkim and self.dkim_pem:
            from autosmime.devstack._dkim import sign_if_ours

            raw = sign_if_ours(raw, self.domain, self.dkim["selector"], self.dkim_pem)
        for rcpt in envelope.rcpt_tos:
            port = self.routes.get(rcpt.rpartition("@")[2].lower())
            try:
                if port is not None:
                    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                        smtp.sendmail(envelope.mail_from, [rcpt], raw)
                    continue
                with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=30) as lmtp:
                    lmtp.sendmail(envelope.mail_from, [rcpt], raw)
            except (OSError, smtplib.SMTPException) as e:
                return f"451 4.3.0 Delivery to {rcpt} failed: {' '.join(str(e).split())}"
        return "250 OK delivered"


def _authenticator(users: _Users):
    def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        name = auth_data.login.decode(errors="replace").split("@")[0].lower()
        ok = users.table().get(name) == auth_data.password.decode(errors="replace")
        return AuthResult(success=ok, handled=False)

    return check


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    users = _Users(config["users_file"])
    handler = _Handler(users, config["domain"], config["lmtp_port"], config.get("routes"), config.get("dkim"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(config["cert"], config["key"])
    auth = {"authenticator": _authenticator(users), "auth_required": True, "auth_require_tls": False}
    controllers = [
        Controller(handler, hostname="127.0.0.1", port=config["smtp_port"], tls_context=tls, **auth),
        Controller(handler, hostname="127.0.0.1", port=config["smtps_port"], ssl_context=tls, **auth),
        Controller(handler, hostname="127.0.0.1", port=config["relay_port"]),
    ]
    for controller in controllers:
        controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for controller in controllers:
        controller.stop()


if __name__ == "__main__":
    main(sys.argv[1])
