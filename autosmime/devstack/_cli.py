"""Entry point behind scripts/mailstack: run the loopback mail stack outside pytest.

    $ scripts/mailstack start /tmp/mail      # prints the env file path, then the ports
    $ . /tmp/mail/mailstack.env
    $ scripts/mailstack stop /tmp/mail
"""

from __future__ import annotations

import sys
from pathlib import Path

from autosmime.devstack.mailserver import ENV_FILE, MailStack, MailStackError


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop", "users"):
        print("usage: mailstack start|stop|users DIR", file=sys.stderr)
        return 2
    command, base = argv[0], Path(argv[1]).absolute()
    try:
        if command == "start":
            stack = MailStack.start(base)
            stack.detach()
            print(base / ENV_FILE)
            print(f"imap={stack.imap_port} imaps={stack.imaps_port} smtp={stack.smtp_port} "
                  f"smtps={stack.smtps_port} submission={stack.submission_port or '-'} lmtp={stack.lmtp_port} "
                  f"smtp_kind={stack.smtp_kind} ca_file={stack.ca_file}")
        elif command == "users":
            stack = MailStack.attach(base)
            for name in stack._named:
                email, password = stack.user(name)
                print(f"{email} {password}")
        else:
            MailStack.attach(base).stop()
    except MailStackError as e:
        print(f"mailstack: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
