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
import re
import subprocess
from dataclasses import dataclass

DOVECOT = "/usr/sbin/dovecot"


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


def installed_version(binary: str = DOVECOT) -> tuple[int, int]:
    """(major, minor) of the installed Dovecot, from ``dovecot --version``; (2, 3) if it is not installed.

        >>> installed_version("/nonexistent/dovecot")
        (2, 3)
    """
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return (2, 3)
    # "2.3.19.1 (9b53102964)" on Debian 12, "2.4.1-4 (7d8c0e5759)" on Debian 13.
    match = re.match(r"\s*(\d+)\.(\d+)", out)
    return (int(match[1]), int(match[2])) if match else (2, 3)


def dovecot_conf(base: str, ports: DovecotPorts, *, as_root: bool, version: tuple[int, int] | None = None) -> str:
    """The config for Dovecot ``version`` (default: the installed one).

    2.4 changed the format incompatibly (renamed settings, named passdb/userdb,
    %{variables}); the same instance is written in whichever the server reads.
    """
    v24 = (version or installed_version()) >= (2, 4)
    user, group = mail_owner(as_root)
    internal = ("dovecot", "dovecot", "dovenull") if as_root else (user, group, user)
    # Without root there is nothing to chroot into.
    chroot = "" if as_root else "  chroot =\n"
    lines = [
        # 2.4 refuses a config whose first setting is not this; 2.4.0 pins the defaults we were tested with.
        "dovecot_config_version = 2.4.0" if v24 else "",
        "dovecot_storage_version = 2.4.0" if v24 else "",
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
        f"ssl_server_cert_file = {base}/tls/cert.pem" if v24 else f"ssl_cert = <{base}/tls/cert.pem",
        f"ssl_server_key_file = {base}/tls/key.pem" if v24 else f"ssl_key = <{base}/tls/key.pem",
        "ssl_min_protocol = TLSv1.2",
        "auth_allow_cleartext = yes" if v24 else "disable_plaintext_auth = no",
        "auth_mechanisms = plain login",
        "auth_username_format = %{user | username | lower}" if v24 else "auth_username_format = %Ln",
        "auth_verbose = yes",
        # Wrong-password tests must not slow down the logins after them (§6.3).
        "auth_failure_delay = 0",
        "login_trusted_networks = 127.0.0.0/8 ::1",
        *(["mail_driver = maildir", "mail_path = ~/Maildir", "mailbox_list_layout = fs"] if v24
          else ["mail_location = maildir:~/Maildir:LAYOUT=fs"]),
        f"mail_uid = {user}",
        f"mail_gid = {group}",
        "first_valid_uid = 1",
        "first_valid_gid = 1",
        "imap_metadata = yes",
        ("mail_attribute {\n  dict file {\n    path = %{home}/dovecot-attributes\n  }\n}" if v24
         else "mail_attribute_dict = file:%h/dovecot-attributes"),
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
        *(_passdb_userdb_24(base, user, group) if v24 else _passdb_userdb_23(base, user, group)),
        "protocol imap {",
        "  mail_max_userip_connections = 1000",
        "}",
        "service imap-login {",
        chroot + _listener("imap", ports.imap, v24=v24),
        _listener("imaps", ports.imaps, v24=v24, ssl=True),
        "}",
        "service lmtp {",
        _listener("lmtp", ports.lmtp, v24=v24),
        "}",
        "service anvil {",
        chroot + "  unix_listener anvil-auth-penalty {\n    mode = 0\n  }",
        "}",
        "service auth {",
        _listener("auth-inet", ports.auth, v24=v24),
        "}",
    ]
    if ports.submission:
        lines += [
            "submission_relay_host = 127.0.0.1",
            f"submission_relay_port = {ports.relay}",
            "service submission-login {",
            chroot + _listener("submission", ports.submission, v24=v24),
            # 2.4 also listens on 465 (submissions) by default: a fixed port clashes between instances.
            "  inet_listener submissions {\n    port = 0\n  }" if v24 else "",
            "}",
        ]
    return "\n".join(line for line in lines if line) + "\n"


def _listener(name: str, port: int, *, v24: bool, ssl: bool = False) -> str:
    # 2.4 has no per-listener address: the global listen = 127.0.0.1 applies.
    address = "" if v24 else "    address = 127.0.0.1\n"
    return f"  inet_listener {name} {{\n{address}    port = {port}\n" + ("    ssl = yes\n" if ssl else "") + "  }"


def _passdb_userdb_23(base: str, user: str, group: str) -> list[str]:
    return [
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN {base}/users",
        "}",
        "userdb {",
        "  driver = passwd-file",
        f"  args = {base}/users",
        f"  default_fields = uid={user} gid={group} home={base}/mail/%n",
        "}",
    ]


def _passdb_userdb_24(base: str, user: str, group: str) -> list[str]:
    # 2.3's args / default_fields became named settings and a fields block (":default" = default_fields).
    return [
        "passdb users {",
        "  driver = passwd-file",
        "  default_password_scheme = PLAIN",
        f"  passwd_file_path = {base}/users",
        "}",
        "userdb users {",
        "  driver = passwd-file",
        f"  passwd_file_path = {base}/users",
        "  fields {",
        f"    uid:default = {user}",
        f"    gid:default = {group}",
        f"    home:default = {base}/mail/%{{user | username}}",
        "  }",
        "}",
    ]
