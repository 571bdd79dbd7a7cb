"""Text that came from the mail provider, made safe to print on a terminal and to store.

    >>> from autosmime.mailbox.text import server_text
    >>> server_text(b"NO [AUTHENTICATIONFAILED] \\x1b[2J\\x1b]0;pwned\\x07Bad\\r\\n  password\\u202e")
    'NO [AUTHENTICATIONFAILED] Bad password'

IMAP and SMTP replies, and anything else a server (or whoever controls it)
says, reach the user's terminal in error messages and are stored as the
reason of a pending backup. A hostile provider could put terminal escape
sequences in them (clear the screen, retitle the window, fake a prompt, write
to the clipboard with OSC 52) or reorder what is shown with bidi overrides.
Every such text goes through :func:`server_text` where it enters autosmime.
"""

from __future__ import annotations

import re
import unicodedata

#: longest server text kept; a reply is a diagnosis, not a document
MAX_SERVER_TEXT = 300

# Whole escape sequences go, not just their ESC: "[2J" or "]0;title" left behind is noise.
# CSI: ESC [ or U+009B, parameters, intermediates, one final byte. OSC, DCS, SOS, PM, APC:
# up to BEL or ST (ESC \ or U+009C), or the end of the text. Anything else: ESC and one character.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)
_SPACES = re.compile(r"\s+")


def _keep(ch: str) -> bool:
    # Cc: C0, DEL and C1 controls. Cf: format characters, among them the bidi embeddings,
    # overrides and isolates (U+202A-202E, U+2066-2069), marks (U+200E/F, U+061C) and zero
    # widths. Cs/Co/Cn: surrogates, private use and unassigned code points have no place here.
    return unicodedata.category(ch)[0] != "C"


def server_text(text: str | bytes | bytearray, limit: int = MAX_SERVER_TEXT) -> str:
    """``text`` as one printable line: escape sequences and control, format and bidi characters
    removed, line breaks and other white space folded to single spaces, at most ``limit``
    characters (an ellipsis marks a cut). Bytes are read as UTF-8, invalid bytes replaced."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    text = _ESCAPES.sub("", text)
    # Line and paragraph separators (Zl, Zp) and every other white space become one space.
    text = _SPACES.sub(" ", "".join(ch if _keep(ch) else (" " if ch.isspace() else "") for ch in text)).strip()
    if len(text) > limit:
        text = text[: max(0, limit - 1)].rstrip() + "…"
    return text


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: East Asian wide and full-width characters take two, combining
    marks none (what wcwidth computes for the printable text :func:`server_text` leaves)."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def fit(text: str, width: int) -> str:
    """``text`` cut (with an ellipsis) and padded to exactly ``width`` terminal columns."""
    if display_width(text) > width:
        out, used = [], 0
        for ch in text:
            w = display_width(ch)
            if used + w > width - 1:
                break
            out.append(ch)
            used += w
        text = "".join(out) + "…"
    return text + " " * (width - display_width(text))


def mail_text(text: str) -> str:
    """A message's text for the terminal: each line as :func:`server_text` cleans it (no escape
    sequence, control or bidi character), the line breaks and blank lines kept, no length limit."""
    return "\n".join(server_text(line, limit=len(line) + 1) for line in text.splitlines()).strip("\n")
