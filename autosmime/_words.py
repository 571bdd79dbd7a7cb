"""Words for people, shared by the library's messages and the command line.

    >>> plural(1, "key"), plural(2, "key"), plural(0, "entry", "entries")
    ('1 key', '2 keys', '0 entries')
"""

from __future__ import annotations

__all__ = ["plural"]


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and the noun agreeing with it: "1 key", "2 keys" (``many`` for irregular nouns)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
