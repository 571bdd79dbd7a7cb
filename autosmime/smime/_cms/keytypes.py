"""Key-type checks for the hot paths.

    >>> from cryptography.hazmat.primitives.asymmetric import ec, rsa
    >>> is_a(ec.generate_private_key(ec.SECP256R1()), rsa.RSAPrivateKey)
    False
"""

from __future__ import annotations

from functools import lru_cache
from typing import TypeGuard, TypeVar

_T = TypeVar("_T")


@lru_cache(maxsize=64)
def _subclass(cls: type, family: type) -> bool:
    return issubclass(cls, family)


def is_a(key: object, family: type[_T]) -> TypeGuard[_T]:
    """``isinstance(key, family)`` for cryptography's key ABCs, remembered per concrete type.

    cryptography's key classes are virtual subclasses of its ABCs, so each plain
    isinstance() runs ABCMeta's Python hook, about a third of a microsecond; a
    message checks its keys several times.
    """
    cls: type = type(key)
    fam: type = family
    return _subclass(cls, fam)
