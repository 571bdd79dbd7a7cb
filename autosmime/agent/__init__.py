"""The agent: the only code that resolves the account and credentials, opens mailbox sessions,
owns the backup queue and runs flows. Front ends (the CLI) call it and word its typed results.

    >>> from autosmime.agent import Agent, backup  # doctest: +SKIP
    >>> outcome = backup.backup(Agent(home)); outcome.state, outcome.seq  # doctest: +SKIP
    (<BackupState.STORED: 'stored'>, 4)

Modules: ``context`` (:class:`Agent`, the injected environment), ``outcomes``
(typed results), ``backup`` (backup, queue and retry, restore, recovery code),
``join`` (device join), ``keys`` (import, status), and the flows of the
certificate and key-directory work (``enrol``, ``publish``, ``lookup``, ...).
A new flow is a function taking an :class:`Agent` in a module of its own;
it opens sessions with ``agent.open_mailbox()`` and calls
``backup.after_key_change(agent)`` after it changed keys.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Agent": "context", "MailboxFactory": "context", "CodePresenter": "context",
    "BackupOutcome": "outcomes", "BackupState": "outcomes", "RestoreOutcome": "outcomes",
    "ImportOutcome": "outcomes", "DeviceStatus": "outcomes", "Approval": "outcomes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autosmime.agent' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autosmime.agent.{module}"), name)
