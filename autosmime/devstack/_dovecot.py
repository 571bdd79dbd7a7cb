"""dovecot.conf for a private, loopback-only Dovecot instance.

    >>> from autosmime.devstack._dovecot import dovecot_conf, DovecotPorts
    >>> ports = DovecotPorts(imap=10143, imaps=10993, lmtp=10024, auth=10025)
    >>> "port = 10143" in dovecot_conf("/tmp/x", ports, as_root=True)
    True

Every setting and why it is there: shared/research/mail-test-servers.md §3 and §6.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass


@dataclass(frozen=True)
class DovecotPorts:
    imap: int
    imaps: int
    lmtp: int
    auth: int
    submission: int | None = None
    relay: int | None = None      # AUTH-less SMTP port the submission service relays to


def mail_owner(as_root: bool) -> tuple[str, str]:
    """(user, group) that owns the maildirs; Dovecot refuses mail access as root."""
    if as_root:
        return "nobody", "nogroup"
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def dovecot_conf(base: str, ports: DovecotPorts, *, as_root: bool) -> str:
    user, group = mail_owner(as_root)
    internal = ("dovecot", "dovecot", "dovenull") if as_root else (user, group, user)
    # Without root there is nothing to chroot into.
    chroot = "" if as_root else "  chroot =\n"
    lines = [
        f"instance_name = autosmime-{os.path.basename(base)}",
        f"base_dir = {base}/run",
        f"state_dir = {base}/state",
        f"log_path = {base}/dovecot.log",
        f"info_log_path = {base}/dovecot.log",
        "protocols = imap lmtp" + (" submission" if ports.submission else ""),
        "listen = 127.0.0.1",
        "hostname = mail.example.test",
        "postmaster_address = postmaster@example.test",
        f"default_internal_user = {internal[0]}",
        f"default_internal_group = {internal[1]}",
        f"default_login_user = {internal[2]}",
        "ssl = yes",
        f"ssl_cert = <{base}/tls/cert.pem",
        f"ssl_key = <{base}/tls/key.pem",
        "ssl_min_protocol = TLSv1.2",
        "disable_plaintext_auth = no",
        "auth_mechanisms = plain login",
        "auth_username_format = %Ln",
        "auth_verbose = yes",
        # Wrong-password tests must not slow down the logins after them (§6.3).
        "auth_failure_delay = 0",
        "login_trusted_networks = 127.0.0.0/8 ::1",
        "mail_location = maildir:~/Maildir:LAYOUT=fs",
        f"mail_uid = {user}",
        f"mail_gid = {group}",
        "first_valid_uid = 1",
        "first_valid_gid = 1",
        "imap_metadata = yes",
        "mail_attribute_dict = file:%h/dovecot-attributes",
        "lmtp_save_to_detail_mailbox = yes",
        "recipient_delimiter = +",
        "namespace inbox {",
        "  inbox = yes",
        "  separator = /",
        "  mailbox Drafts {\n    special_use = \\Drafts\n    auto = subscribe\n  }",
        "  mailbox Sent {\n    special_use = \\Sent\n    auto = subscribe\n  }",
        "  mailbox Trash {\n    special_use = \\Trash\n    auto = subscribe\n  }",
        "  mailbox Junk {\n    special_use = \\Junk\n    auto = subscribe\n  }",
        "  mailbox Archive {\n    special_use = \\Archive\n    auto = create\n  }",
        "}",
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN {base}/users",
        "}",
        "userdb {",
        "  driver = passwd-file",
        f"  args = {base}/users",
        f"  default_fields = uid={user} gid={group} home={base}/mail/%n",
        "}",
        "protocol imap {",
        "  mail_max_userip_connections = 1000",
        "}",
        "service imap-login {",
        chroot + f"  inet_listener imap {{\n    address = 127.0.0.1\n    port = {ports.imap}\n  }}",
        f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {ports.imaps}\n    ssl = yes\n  }}",
        "}",
        "service lmtp {",
        f"  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {ports.lmtp}\n  }}",
        "}",
        "service anvil {",
        chroot + "  unix_listener anvil-auth-penalty {\n    mode = 0\n  }",
        "}",
        "service auth {",
        f"  inet_listener auth-inet {{\n    address = 127.0.0.1\n    port = {ports.auth}\n  }}",
        "}",
    ]
    if ports.submission:
        lines += [
            "submission_relay_host = 127.0.0.1",
            f"submission_relay_port = {ports.relay}",
            "service submission-login {",
            chroot + f"  inet_listener submission {{\n    address = 127.0.0.1\n    port = {ports.submission}\n  }}",
            "}",
        ]
    return "\n".join(line for line in lines if line) + "\n"
