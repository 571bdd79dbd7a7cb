"""A private Postfix instance: SMTP AUTH (via Dovecot SASL) -> LMTP into Dovecot.

    >>> from autosmime.devstack._postfix import main_cf
    >>> "virtual_transport = lmtp:inet:127.0.0.1:2424" in main_cf("/tmp/x", lmtp=2424, auth=2425)
    True

Settings and start-up traps: shared/research/mail-test-servers.md §4.1 and §6.8.
"""

from __future__ import annotations

import grp
import os
import pwd
import time
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"

_STANDARD_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def main_cf(base: str, *, lmtp: int, auth: int, routes: dict[str, int] | None = None) -> str:
    """main.cf; ``routes`` sends mail for other domains (e.g. the CA's) over SMTP to a loopback port."""
    spool = f"{base}/postfix/spool"
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": spool,
        "data_directory": f"{base}/postfix/data",
        "maillog_file_prefixes": base,
        "maillog_file": f"{base}/postfix.log",
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "myhostname": "smtp.example.test",
        "mydomain": "example.test",
        "myorigin": "$mydomain",
        "mydestination": "",
        "local_recipient_maps": "",
        "relayhost": "",
        "alias_maps": "",
        "alias_database": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "virtual_mailbox_domains": "example.test",
        "virtual_transport": f"lmtp:inet:127.0.0.1:{lmtp}",
        "smtp_dns_support_level": "disabled",
        "lmtp_host_lookup": "native",
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": f"inet:127.0.0.1:{auth}",
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": f"{base}/tls/cert.pem",
        "smtpd_tls_key_file": f"{base}/tls/key.pem",
        "smtpd_tls_auth_only": "no",
        "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
        "smtpd_recipient_restrictions": "permit_sasl_authenticated, reject",
        "smtpd_reject_unlisted_recipient": "no",
        "queue_run_delay": "1s",
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "5s",
        "maximal_queue_lifetime": "1m",
        "bounce_queue_lifetime": "1m",
        "biff": "no",
        "message_size_limit": "52428800",
    }
    if routes:
        table = ", ".join(f"{domain}=smtp:[127.0.0.1]:{port}" for domain, port in sorted(routes.items()))
        settings["transport_maps"] = f"inline:{{{table}}}"
    return "".join(f"{k} = {v}\n" for k, v in settings.items())


def master_cf(*, smtp: int, smtps: int, relay: int, dkim_filter: int | None = None,
              reinject: int | None = None) -> str:
    """master.cf; with ``dkim_filter`` every listener hands mail to that content filter, which
    re-injects it (signed) on the filter-free ``reinject`` port."""
    # chroot "n" everywhere: the spool is not a prepared chroot (§6.8d).
    filtered = f"  -o content_filter=smtp:[127.0.0.1]:{dkim_filter}\n" if dkim_filter else ""
    text = (
        f"127.0.0.1:{smtp} inet n - n - - smtpd\n"
        + filtered
        + f"127.0.0.1:{smtps} inet n - n - - smtpd\n"
        "  -o smtpd_tls_wrappermode=yes\n  -o smtpd_tls_security_level=encrypt\n"
        + filtered
        + f"127.0.0.1:{relay} inet n - n - - smtpd\n"
        "  -o smtpd_sasl_auth_enable=no\n"
        "  -o smtpd_recipient_restrictions=permit_mynetworks,reject\n"
        "  -o smtpd_relay_restrictions=permit_mynetworks,reject\n"
        + filtered
    )
    if dkim_filter and reinject:
        text += (
            f"127.0.0.1:{reinject} inet n - n - - smtpd\n"
            "  -o content_filter=\n"
            "  -o smtpd_sasl_auth_enable=no\n"
            "  -o smtpd_recipient_restrictions=permit_mynetworks,reject\n"
            "  -o smtpd_relay_restrictions=permit_mynetworks,reject\n"
            "  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks\n"
        )
    return text + _STANDARD_SERVICES


def prepare(base: Path, *, smtp: int, smtps: int, relay: int, lmtp: int, auth: int,
            dkim_filter: int | None = None, reinject: int | None = None,
            routes: dict[str, int] | None = None) -> Path:
    """Write the config and queue; returns the config directory."""
    conf = base / "postfix" / "conf"
    spool = base / "postfix" / "spool"
    data = base / "postfix" / "data"
    conf.mkdir(parents=True)
    (conf / "main.cf").write_text(main_cf(str(base), lmtp=lmtp, auth=auth, routes=routes))
    (conf / "master.cf").write_text(master_cf(smtp=smtp, smtps=smtps, relay=relay, dkim_filter=dkim_filter,
                                              reinject=reinject))
    # Postfix waits until main.cf is > 1 s old (§6.8b).
    old = time.time() - 60
    for name in ("main.cf", "master.cf"):
        os.utime(conf / name, (old, old))
    pf_uid = pwd.getpwnam("postfix").pw_uid
    pf_gid = grp.getgrnam("postfix").gr_gid
    postdrop = grp.getgrnam("postdrop").gr_gid
    spool.mkdir(mode=0o755)
    data.mkdir(mode=0o700)
    os.chown(data, pf_uid, pf_gid)
    # Pre-created queue: skips ~2.3 s of post-install + postsuper (§6.8c).
    for name in ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold",
                 "incoming", "private", "saved", "trace"):
        (spool / name).mkdir(mode=0o700)
        os.chown(spool / name, pf_uid, 0)
    for name, mode in (("maildrop", 0o730), ("public", 0o710)):
        (spool / name).mkdir()
        os.chmod(spool / name, mode)
        os.chown(spool / name, pf_uid, postdrop)
    (spool / "pid").mkdir(mode=0o755)
    (spool / "quick-start").touch()
    return conf


def available() -> bool:
    return os.geteuid() == 0 and os.path.exists(POSTFIX) and os.path.exists("/usr/lib/postfix/sbin/smtpd")
