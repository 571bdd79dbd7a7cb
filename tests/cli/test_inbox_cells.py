"""The inbox table prints text written by strangers (From, Subject): never a terminal escape sequence."""

from __future__ import annotations

from autosmime.cli.mail import _cell


def test_escape_sequences_and_bidi_in_a_cell_are_removed():
    subject = "hi \x1b]0;pwned\x07 \x1b]52;c;ZXZpbA==\x07there \x1b[2J\u202eevil\x9b31m"
    cell = _cell(subject, 40)
    assert cell == "hi there evil"
    assert not any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in cell)


def test_a_long_cell_is_still_cut_to_its_width():
    assert _cell("x" * 50, 30) == "x" * 29 + "…"
    assert _cell("plain\tsubject", 30) == "plain subject"
