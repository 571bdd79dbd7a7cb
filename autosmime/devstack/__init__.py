"""Loopback test infrastructure: a private mail stack and a connection-cutting proxy.

    >>> from autosmime.devstack import MailStack, CuttingProxy  # doctest: +SKIP
"""

from autosmime.devstack.faultproxy import CuttingProxy
from autosmime.devstack.mailserver import MailStack

__all__ = ["CuttingProxy", "MailStack"]
