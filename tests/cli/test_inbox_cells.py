"""The inbox table prints text written by strangers (From, Subject): never a terminal escape sequence."""

from __future__ import annotations

from autosmime.cli.mail import _cell


def test_escape_sequences_and_bidi_in_a_cell_are_removed():
    subject = "hi \x1b]0;pwned\x07 \x1b]52;c;ZXZpbA==\x07there \x1b[2J\u202eevil\x9b31m"
    cell = _cell(subject, 40)
    assert cell == "hi there evil".ljust(40)
    assert not any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in cell)


def test_a_long_cell_is_still_cut_to_its_width():
    assert _cell("x" * 50, 30) == "x" * 29 + "…"
    assert _cell("plain\tsubject", 30) == "plain subject".ljust(30)


def test_wide_characters_take_two_columns_so_the_columns_line_up():
    from autosmime.mailbox.text import display_width

    for text in ("会議の議題について", "会議の議題について、来週の月曜日に確認します", "Größe", "ｆｕｌｌ ｗｉｄｔｈ", "e\u0301te\u0301"):
        cell = _cell(text, 12)
        assert display_width(cell) == 12, (text, cell)
    assert _cell("会議の議題について、来週", 12) == "会議の議題… "   # 10 columns, the ellipsis, one space
    assert _cell("e\u0301te\u0301", 4) == "e\u0301te\u0301" + " "   # three columns, one space
