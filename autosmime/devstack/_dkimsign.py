"""Postfix's after-queue content filter that DKIM-signs the stack's outgoing mail.

    $ python -m autosmime.devstack._dkimsign DIR/dkimsign.json     # started by MailStack, stopped by SIGTERM

Postfix hands every submitted message to this listener (``content_filter``);
it signs mail From the stack's domain (:mod:`autosmime.devstack._dkim`) and
re-injects it into Postfix's filter-free port, which delivers it (LMTP into
Dovecot, or SMTP to a routed domain such as the CA's). A failure answers 451,
so Postfix keeps the mail queued rather than sending it unsigned.
"""

from __future__ import annotations

import json
import signal
import smtplib
import sys
import threading
from pathlib import Path

from aiosmtpd.controller import Controller

from autosmime.devstack._dkim import sign_if_ours


class _Signer:
    def __init__(self, domain: str, selector: str, pem: bytes, reinject_port: int) -> None:
        self.domain, self.selector, self.pem, self.reinject_port = domain, selector, pem, reinject_port

    async def handle_DATA(self, server, session, envelope):
        try:
            raw = sign_if_ours(envelope.original_content, self.domain, self.selector, self.pem)
            with smtplib.SMTP("127.0.0.1", self.reinject_port, timeout=30) as smtp:
                smtp.sendmail(envelope.mail_from, envelope.rcpt_tos, raw)
        except Exception as e:  # keep it queued in Postfix, say why in its log
            return f"451 4.3.0 DKIM filter failed: {' '.join(str(e).split())[:200]}"
        return "250 OK signed"


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    pem = Path(config["key"]).read_bytes()
    handler = _Signer(config["domain"], config["selector"], pem, config["reinject_port"])
    controller = Controller(handler, hostname="127.0.0.1", port=config["port"])
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main(sys.argv[1])
