"""Devices sharing one in-memory mailbox, for the agent's fast tests (no tests here).

Everything is real except the mailbox: real vaults in temp homes, real keys
from a real test CA, the real backup format and protocol, only with cheap
key-derivation costs (the parameters a reader accepts, far below the spec's).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from autosmime.agent.context import Agent
from autosmime.devstack.faultproxy import CuttingProxy
from autosmime.mailbox.account import Account
from autosmime.mailbox.memory import Fault, MemoryMailbox, MemoryServer
from autosmime.mailbox.session import MailboxSession
from autosmime.pki.certs import fingerprint
from autosmime.pki.pkcs12 import build_pfx
from autosmime.vault import format as fmt
from autosmime.vault.backup import BackupParams
from autosmime.vault.recovery import load_code
from autosmime.vault.store import VAULT_FILE, Vault
from tests.vault import backup_support as support

ADDRESS = "multi@example.test"
CHEAP = BackupParams(kdf=fmt.KdfParams(memory_kib=8, iterations=1, lanes=1), pfx_iterations=1)
ACCOUNT = Account(ADDRESS, "127.0.0.1", 143, "127.0.0.1", 587)


@dataclass
class World:
    """One account's mailbox and the devices that share it."""

    root: Path
    server: MemoryServer = field(default_factory=MemoryServer)
    shown: list[str] = field(default_factory=list)  # recovery codes shown on a "terminal"

    def device(self, name: str, *, terminal: bool = False) -> Agent:
        def present(code: str) -> bool:
            self.shown.append(code)
            return True

        return Agent(self.root / name, mailbox_factory=lambda account, password: self.server.session(),
                     account=ACCOUNT, password="unused", backup_params=CHEAP, device=name,
                     present_code=present if terminal else None)

    def session(self) -> MemoryMailbox:
        """A session for the test's own checks (never cut)."""
        return self.server.session()

    def cuts(self, rng: random.Random | None, rate: float = 0.0) -> None:
        """From now on each mailbox operation breaks the connection with probability ``rate``."""
        if rng is None or rate <= 0:
            self.server.faults = None
            return

        def fault(_op: str) -> Fault:
            if rng.random() >= rate:
                return None
            return "before" if rng.random() < 0.5 else "after"

        self.server.faults = fault


def p12_of_new_key(password: bytes = b"pw") -> tuple[bytes, str]:
    """A PKCS#12 file with one fresh key for the account, and its certificate's fingerprint."""
    key, cert, chain = support.new_pair(ADDRESS)
    return build_pfx([(key, cert, chain)], password, iterations=1), fingerprint(cert)


def held(agent: Agent) -> set[str]:
    """Fingerprints in a device's vault (empty if it has none)."""
    if not (agent.home / VAULT_FILE).exists():
        return set()
    return {e.fingerprint for e in Vault.open(agent.home, create=False).entries()}


def code_of(agent: Agent) -> str | None:
    return load_code(agent.home)


@dataclass
class DovecotWorld:
    """The same devices on the real Dovecot account, through a proxy that cuts TCP connections."""

    root: Path
    direct: Account  # the account as the test's own checks reach it
    through_proxy: Account  # ... and as the devices do
    password: str
    proxy: CuttingProxy

    def device(self, name: str) -> Agent:
        from autosmime.mailbox.imap import ImapMailbox

        return Agent(self.root / name, mailbox_factory=ImapMailbox.connect, account=self.through_proxy,
                     password=self.password, backup_params=CHEAP, device=name)

    def session(self) -> MailboxSession:
        from autosmime.mailbox.imap import ImapMailbox

        return ImapMailbox.connect(self.direct, self.password)

    def cuts(self, rng: random.Random | None, rate: float = 0.0) -> None:
        """Half the steps run with every connection cut after a random number of client bytes."""
        if rng is None or rate <= 0 or rng.random() < 0.5:
            self.proxy.cut_after(None)
        else:
            self.proxy.cut_after(rng.randint(0, 12000))
