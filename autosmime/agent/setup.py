"""``autosmime setup``: from an email address to a device that signs, encrypts and is backed up, in one flow.

    >>> from autosmime.agent.setup import Prompts, ServerGiven, setup
    >>> outcome = setup(home, "me@example.org", ServerGiven(ca_url="https://ca.example/acme/directory"),
    ...                 Prompts(ask_password=lambda prompt: "secret"))        # doctest: +SKIP
    >>> outcome.keys, outcome.backup.state                                     # doctest: +SKIP
    (<KeysFrom.ENROLLED: 'enrolled'>, <BackupState.STORED: 'stored'>)

The steps, each skipped when an earlier run already did it, so running setup
again is harmless and a run that stopped half-way resumes where it stopped:

1. Mail settings: the ones given, else discovered from the address
   (:func:`autosmime.mailbox.autoconfig.discover`: bundled provider entries, the
   domain's autoconfig file, SRV records); a home already set up keeps its own.
2. The password (given file, the saved source, or asked at the terminal), and
   the IMAP and SMTP login checked before anything is saved; then the account
   is saved and the password kept in the OS keyring, or in a 0600 file in the
   home where there is no keyring (a given password file is remembered instead).
3. Keys: a usable certificate already held is kept. Otherwise, if the mailbox's
   backup folder holds backups and this device has no recovery code, they are
   restored with the recovery code: given, asked at the terminal, or received
   from another device of the user's (a join: with an invitation code from that
   device it is answered there by itself, else the person compares codes on both
   screens). With none of these, RecoveryCodeNeeded (exit 4). With no backup,
   a certificate is obtained over ACME for S/MIME (:mod:`autosmime.agent.enrol`).
4. Backup: after an enrolment, or when the last backup is pending or never
   happened; a new recovery code is shown once (``Prompts.present_code``) and/or
   written to ``recovery_code_out``.
5. Publication in the key directory (given, ``$AUTOSMIME_DIRECTORY`` or the last
   one used), unless its log already proves the certificate there (as after a
   restore, when the device that enrolled published it); skipped with a note
   when there is no directory.

Everything the flow decided comes back as a :class:`SetupOutcome`; nothing is printed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autosmime.agent.context import Agent, MailboxFactory, imap_session
from autosmime.agent.enrol import DEFAULT_CA_STATE, Timeouts
from autosmime.agent.outcomes import BackupOutcome, RestoreOutcome
from autosmime.errors import AccountError, NoBackupFound, NoKey, RecoveryCodeNeeded, UsageError
from autosmime.mailbox.account import ACCOUNT_FILE, Account, format_security, load_account, parse_security
from autosmime.mailbox.autoconfig import MailSettings, discover
from autosmime.vault.backup import DEFAULT_PARAMS, BackupParams
from autosmime.vault.join import Invitation
from autosmime.vault.store import Vault

__all__ = ["KeysFrom", "Progress", "Prompts", "Publication", "ServerGiven", "SetupOutcome", "guess_security",
           "resolve_account", "setup"]

PUBLISHED_STATE = "setup_published"  # vault state: {"sha256": ..., "url": ...} of the last publication
#: ports that speak TLS from the first byte (RFC 8314); any other port is taken as STARTTLS
IMPLICIT_TLS_PORTS = {"imap": 993, "smtp": 465}

Progress = Callable[[str], None]
DEFAULT_TIMEOUTS = Timeouts()


class KeysFrom(enum.Enum):
    HELD = "held"  # a usable certificate was on this device already
    RESTORED = "restored"  # from the account's backup
    ENROLLED = "enrolled"  # a new certificate from the CA


class Publication(enum.Enum):
    PUBLISHED = "published"  # published by this run
    HELD = "held"  # published before (by an earlier run, or by another device: the log shows it)
    NO_DIRECTORY = "no-directory"  # none given and none known


@dataclass(frozen=True)
class ServerGiven:
    """What the user gave on the command line; None means "discover" (or "keep", for a home set up before)."""

    imap: tuple[str, int] | None = None
    smtp: tuple[str, int] | None = None
    security: str | None = None  # a --security value: "tls", "imap=tls,smtp=starttls", ...
    username: str | None = None
    ca_file: str | None = None  # the mail servers' TLS CA
    password_file: str | None = None
    ca_url: str | None = None  # the ACME directory
    ca_trust: str | None = None  # CA certificates for the ACME server's HTTPS
    directory: str | None = None  # the key directory
    recovery_code: str | None = None  # read by the caller from --recovery-code-file
    recovery_code_out: Path | None = None
    invitation: Invitation | None = None  # from another device of the user's (`autosmime invite`), to join with
    join_timeout: float = 600


@dataclass(frozen=True)
class Prompts:
    """How the flow reaches the person, when one is there (None: nobody to ask)."""

    ask_password: Callable[[str], str] | None = None
    ask_code: Callable[[], str | None] | None = None  # the recovery code; None or "" declines (then: join)
    show_join_code: Callable[[str], None] | None = None  # a join request is waiting: show C1 (None: cannot join)
    confirm_join: Callable[[str], bool] | None = None  # an approval arrived: does the other device show C2?
    present_code: Callable[[str], bool] | None = None  # show a new recovery code once; True if shown
    progress: Progress | None = None  # a step that may take over a second begins


@dataclass(frozen=True)
class CertSummary:
    sha256: str
    not_after: str  # RFC 3339
    issuer: str


@dataclass(frozen=True)
class SetupOutcome:
    address: str
    home: Path
    account_saved: bool  # the account was saved by this run (False: set up before)
    settings_source: str  # "given", "bundled", "autoconfig", "srv", or "saved"
    imap: str  # host:port
    smtp: str
    security: str
    password_store: str  # "keyring", "file" (0600 in the home) or "password-file" (the given file's path)
    keys: KeysFrom
    certificate: CertSummary | None
    restore: RestoreOutcome | None = None
    backup: BackupOutcome | None = None  # None: no backup was needed (one is stored already)
    backup_last_ok: str | None = None
    publication: Publication = Publication.NO_DIRECTORY
    directory: str | None = None
    published_sha256: str | None = None
    code_shown: bool = False  # the recovery code was shown on the terminal by this run
    code_file: Path | None = None  # ... and/or written to this file
    code_unseen: bool = False  # a recovery code exists that was never shown nor written out
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        """False when the run found everything done and changed nothing."""
        return (self.account_saved or self.keys is not KeysFrom.HELD or self.backup is not None
                or self.publication is Publication.PUBLISHED)


def guess_security(protocol: str, port: int) -> str:
    """The mode a port implies when none was given: TLS on 993/465, STARTTLS elsewhere.

    >>> guess_security("imap", 993), guess_security("smtp", 587)
    ('tls', 'starttls')
    """
    return "tls" if IMPLICIT_TLS_PORTS[protocol] == port else "starttls"


def resolve_account(address: str, given: ServerGiven,
                    discover_settings: Callable[[str], MailSettings] = discover) -> tuple[Account, str]:
    """The account for ``address`` from the given settings, discovery filling in what is missing.

    Returns the account (not saved) and where its settings came from.

    >>> acct, source = resolve_account("someone@gmx.net", ServerGiven())
    >>> (acct.imap_host, acct.imap_port, acct.smtp_port, acct.security, source)
    ('imap.gmx.net', 993, 587, 'imap=tls,smtp=starttls', 'bundled')
    """
    modes: tuple[str, str] | None = parse_security(given.security) if given.security else None
    if given.imap is not None and given.smtp is not None:
        (imap_host, imap_port), (smtp_host, smtp_port) = given.imap, given.smtp
        if modes is None:
            modes = (guess_security("imap", imap_port), guess_security("smtp", smtp_port))
        username, source = given.username or address, "given"
    else:
        found = discover_settings(address)
        imap_host, imap_port = given.imap or (found.imap.host, found.imap.port)
        smtp_host, smtp_port = given.smtp or (found.smtp.host, found.smtp.port)
        if modes is None:
            modes = (found.imap.security if given.imap is None else guess_security("imap", imap_port),
                     found.smtp.security if given.smtp is None else guess_security("smtp", smtp_port))
        username, source = given.username or found.imap.username, found.source
    account = Account(email=address, imap_host=imap_host, imap_port=imap_port, smtp_host=smtp_host,
                      smtp_port=smtp_port, username=username, security=format_security(*modes),
                      ca_file=given.ca_file)
    return account, source


def _check_unchanged(saved: Account, given: ServerGiven) -> None:
    """A home set up before keeps its settings: options that would change them are refused, not ignored."""
    differ = []
    if given.imap is not None and given.imap != (saved.imap_host, saved.imap_port):
        differ.append("--imap")
    if given.smtp is not None and given.smtp != (saved.smtp_host, saved.smtp_port):
        differ.append("--smtp")
    if given.security is not None and format_security(*parse_security(given.security)) != saved.security:
        differ.append("--security")
    if given.username is not None and given.username != saved.username:
        differ.append("--username")
    if given.ca_file is not None and str(Path(given.ca_file).absolute()) != saved.ca_file:
        differ.append("--ca-file")
    if differ:
        raise UsageError(f"this home is already set up for {saved.email} with other settings ({', '.join(differ)}); "
                         "setup changes nothing there: use `autosmime account add` to change them")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _note(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


# --- the account and its password -------------------------------------------------------------


def _password(home: Path, account: Account, saved: bool, given: ServerGiven, prompts: Prompts) -> str:
    from autosmime.mailbox.credentials import get_password, read_password_file

    if given.password_file is not None:
        return read_password_file(Path(given.password_file).expanduser())
    if saved:
        try:
            return get_password(account, home)
        except AccountError:
            if prompts.ask_password is None:
                raise
    if prompts.ask_password is None:
        raise UsageError("no password: pass --password-file FILE (there is no terminal to ask on)")
    password = prompts.ask_password(f"Password for {account.username}")
    if not password:
        raise UsageError("no password given")
    return password


def check_login(account: Account, password: str) -> None:
    """Log in to IMAP, then SMTP (sending nothing): a typo in either fails now, not at the first send."""
    from autosmime.mailbox.imap import ImapMailbox
    from autosmime.mailbox.smtp import check_login as smtp_login

    with ImapMailbox.connect(account, password):
        pass
    smtp_login(account, password)


# --- keys -------------------------------------------------------------------------------------


def _usable_certificate(agent: Agent, address: str) -> CertSummary | None:
    """The active, unexpired encryption certificate for ``address``, if the vault holds one."""
    from autosmime.pki.certs import fingerprint

    if not agent.has_vault():
        return None
    try:
        pair = agent.vault(create=False).encryption_pair(address)
    except NoKey:
        return None
    cert = pair.cert
    return CertSummary(fingerprint(cert), cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       cert.issuer.rfc4514_string())


def _check_writable(path: Path) -> None:
    """UsageError now, before anything is enrolled or saved, if the recovery code could not be written to ``path``."""
    import os

    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f"--recovery-code-out: {target} is a directory")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK) \
            or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"--recovery-code-out: cannot write {target}")


def _has_backups(agent: Agent) -> bool:
    from autosmime.vault.backup import folder_has_backups

    with agent.open_mailbox() as box:
        return folder_has_backups(box, agent.account().backup_folder)


def _recovery_code(agent: Agent, given: ServerGiven, prompts: Prompts, notes: list[str]) -> str:
    """The account's recovery code: given, asked for, or received in a join; else RecoveryCodeNeeded (exit 4)."""
    code = given.recovery_code
    if not code and given.invitation is None and prompts.ask_code is not None:
        code = prompts.ask_code()
    if not code and (given.invitation is not None or prompts.show_join_code is not None):
        from autosmime.agent.join import receive_code

        code = receive_code(agent, show_request=prompts.show_join_code or (lambda c1: None),
                            confirm=prompts.confirm_join or (lambda c2: False), timeout=given.join_timeout,
                            invitation=given.invitation)
        notes.append("the recovery code came from your other device"
                     + (" (on its invitation)" if given.invitation is not None else ""))
    if not code:
        raise RecoveryCodeNeeded(
            "this account already has a key backup: give its recovery code (--recovery-code-file FILE), or an "
            "invitation from a device that is set up (`autosmime invite` there, then setup --invite CODE here; "
            f"or `autosmime --home {agent.home} restore --join` here and `autosmime approve` there)")
    return code


def _ca_url(agent: Agent, given: ServerGiven) -> str:
    url = given.ca_url or (agent.vault(create=False).state.get(DEFAULT_CA_STATE) if agent.has_vault() else None)
    if not url:
        raise UsageError("no key backup in the mailbox and no certificate authority to enrol at: pass --ca URL "
                         "(the CA's ACME directory)")
    return str(url)


def _enrol(agent: Agent, url: str, given: ServerGiven, prompts: Prompts, timeouts: Timeouts) -> BackupOutcome | None:
    """A certificate for the account over ACME for S/MIME, and the backup made right after (None if none was)."""
    from autosmime.agent.enrol import enrol_account

    _note(prompts.progress, f"enrolling at {url}: the CA mails a challenge, autosmime answers it")
    return enrol_account(agent, ca_url=url, trust=given.ca_trust, timeouts=timeouts).backup


# --- the flow -----------------------------------------------------------------------------------


def setup(home: Path, address: str, given: ServerGiven = ServerGiven(), prompts: Prompts = Prompts(), *,
          discover_settings: Callable[[str], MailSettings] = discover, mailbox_factory: MailboxFactory = imap_session,
          backup_params: BackupParams = DEFAULT_PARAMS, timeouts: Timeouts = DEFAULT_TIMEOUTS,
          code_sink: Callable[[str], None] | None = None) -> SetupOutcome:
    """Set up ``home`` for ``address``, or finish or re-check an earlier setup (see the module's docstring).

    ``code_sink`` is handed the account's recovery code at the end, new or not (``--recovery-code-out -``).
    """
    from autosmime.agent import backup as backups
    from autosmime.vault.recovery import load_code

    home = Path(home)
    address = address.strip()
    if "@" not in address.strip("@"):
        raise UsageError(f"not an email address: {address!r}")
    notes: list[str] = []

    # 1-2. the account
    saved: Account | None = load_account(home) if (home / ACCOUNT_FILE).exists() else None
    if saved is not None:
        if saved.email.lower() != address.lower():
            raise UsageError(f"{home} is set up for {saved.email}, not {address}; use another --home")
        _check_unchanged(saved, given)
        account, source = saved, "saved"
    else:
        _note(prompts.progress, f"looking up the mail settings for {address}")
        account, source = resolve_account(address, given, discover_settings)
    password = _password(home, account, saved is not None, given, prompts)
    _note(prompts.progress, f"checking the login at {_hostport(account.imap_host, account.imap_port)} (IMAP) and "
                            f"{_hostport(account.smtp_host, account.smtp_port)} (SMTP)")
    check_login(account, password)

    def agent_for(account: Account) -> Agent:
        return Agent(home, mailbox_factory=mailbox_factory, present_code=prompts.present_code,
                     backup_params=backup_params, account=account, password=password)

    if given.recovery_code_out is not None:
        _check_writable(given.recovery_code_out)

    # 3a. what the keys need, decided before anything is saved (a refusal leaves the home as it was)
    agent = agent_for(account)
    cert = _usable_certificate(agent, account.email)
    keys, code, ca_url = KeysFrom.HELD, None, None
    if cert is None:
        _note(prompts.progress, "looking for a key backup in your mailbox")
        if load_code(home) is None and _has_backups(agent):
            keys, code = KeysFrom.RESTORED, _recovery_code(agent, given, prompts, notes)
        elif given.recovery_code or given.invitation is not None:
            what = "the recovery code" if given.recovery_code else "an invitation"
            raise NoBackupFound(f"no key backup in the mailbox folder {account.backup_folder!r} to restore with "
                                f"{what}; run setup without it to get a certificate")
        else:
            keys, ca_url = KeysFrom.ENROLLED, _ca_url(agent, given)

    if saved is None:
        from autosmime.mailbox.account import save_account
        from autosmime.mailbox.credentials import keep_password

        account, store = keep_password(home, account, password, given.password_file)
        save_account(home, account)
        agent = agent_for(account)
    else:
        from autosmime.mailbox.credentials import password_store

        store = password_store(home, account)

    # 3b. keys
    restored: RestoreOutcome | None = None
    if code is not None:
        from autosmime.agent.backup import restore

        _note(prompts.progress, "restoring your keys from the backup in your mailbox")
        restored = restore(agent, code)
        if given.ca_url and agent.has_vault():  # the CA to renew at (the vault's state is this device's own)
            agent.vault(create=False).update_state(**{DEFAULT_CA_STATE: given.ca_url})
        cert = _usable_certificate(agent, account.email)
        if cert is None:
            notes.append("the backup holds no usable certificate for this address: enrolling a new one")
            ca_url = _ca_url(agent, given)
    backup: BackupOutcome | None = None
    if cert is None and ca_url is not None:
        backup = _enrol(agent, ca_url, given, prompts, timeouts)
        keys = KeysFrom.ENROLLED
        cert = _usable_certificate(agent, account.email)

    # 4. backup
    vault = agent.vault()
    state = vault.state
    # after an enrolment that made none; when one is queued; or when this device never stored nor restored
    # one (a run that stopped between enrolment and backup). A restore needs none: it read one with every key.
    never = not (state.get(backups.LAST_OK) or state.get(backups.SEQ_SEEN))
    if backup is None and (keys is KeysFrom.ENROLLED or state.get(backups.PENDING) or never):
        _note(prompts.progress, "backing up your keys into your mailbox")
        backup = backups.backup(agent, recovery_code_out=given.recovery_code_out)
    code_shown = bool(backup and backup.code_shown)
    code_file = backup.code_file if backup else None
    existing = load_code(home)
    if code_file is None and given.recovery_code_out is not None and existing is not None:
        backups._write_code_file(given.recovery_code_out, existing)   # written first: seen only once it is
        backups.show_code(agent, check=False)
        code_file = given.recovery_code_out
    if code_sink is not None and load_code(home) is not None:
        code_sink(backups.show_code(agent, check=False).code)
    if vault.state.get(backups.CODE_UNSEEN) and prompts.present_code is not None:
        # made by an earlier run that stopped before showing it: show it now
        code = load_code(home)
        if code is not None and prompts.present_code(code):
            backups.show_code(agent)
            code_shown = True

    # 5. publication
    publication, directory, published = _publish(agent, vault, given, keys, cert, prompts, notes)

    final = vault.state
    return SetupOutcome(
        address=account.email, home=home, account_saved=saved is None, settings_source=source,
        imap=_hostport(account.imap_host, account.imap_port), smtp=_hostport(account.smtp_host, account.smtp_port),
        security=account.security, password_store=store, keys=keys, certificate=cert, restore=restored,
        backup=backup, backup_last_ok=final.get(backups.LAST_OK), publication=publication, directory=directory,
        published_sha256=published, code_shown=code_shown, code_file=code_file,
        code_unseen=bool(final.get(backups.CODE_UNSEEN)), notes=tuple(notes))


def _in_directory(home: Path, url: str, address: str, sha256: str) -> bool:
    """True if the directory's log proves ``sha256`` published for ``address`` (a read: nothing is changed)."""
    from autosmime.errors import NotPublished
    from autosmime.exchange.client import DirectoryClient
    from autosmime.exchange.transparency import LogWitness

    with DirectoryClient(url) as client:
        witness = LogWitness.open(home, client)
        try:
            answer, _ = client.lookup(address)
        except NotPublished:
            return False
        return sha256 in {p.sha256 for p in witness.verify_lookup(address, answer or {})}


def _publish(agent: Agent, vault: Vault, given: ServerGiven, keys: KeysFrom, cert: CertSummary | None,
             prompts: Prompts, notes: list[str]) -> tuple[Publication, str | None, str | None]:
    from autosmime.agent.publish import _remember_url, directory_url, publish

    if cert is None:
        return Publication.NO_DIRECTORY, None, None
    done = vault.state.get(PUBLISHED_STATE) or {}
    try:
        url: str | None = directory_url(agent.home, given.directory)
    except UsageError:
        url = None
    if done.get("sha256") == cert.sha256 and url in (None, done.get("url")):
        return Publication.HELD, done.get("url"), cert.sha256
    if url is None:
        if keys is not KeysFrom.RESTORED:  # after a restore, the device that enrolled may well have published it
            notes.append("no key directory given or known: your certificate was not published "
                         "(run `autosmime publish --directory URL` when you have one)")
        return Publication.NO_DIRECTORY, None, None
    address = agent.account().email
    if keys is not KeysFrom.ENROLLED and _in_directory(agent.home, url, address, cert.sha256):
        _remember_url(agent.home, url)  # for lookups from this device
        vault.update_state(**{PUBLISHED_STATE: {"sha256": cert.sha256, "url": url}})
        return Publication.HELD, url, cert.sha256
    _note(prompts.progress, f"publishing your certificate in the key directory {url}")
    _remember_url(agent.home, url)  # first: a directory that is down leaves it for status, watch and setup again
    result = publish(agent, url)
    vault.update_state(**{PUBLISHED_STATE: {"sha256": result.sha256, "url": url}})
    return Publication.PUBLISHED, url, result.sha256
