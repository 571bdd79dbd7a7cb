"""`read UID`'s text view: headers, text, attachments; nothing the sender wrote can drive the terminal."""

from __future__ import annotations

from autosmime.cli._view import text_view
from autosmime.smime.compose import compose


def test_the_view_shows_headers_text_and_attachments(tmp_path):
    (tmp_path / "plan.pdf").write_bytes(b"%PDF-1.4 " * 100)
    raw = compose("alice@example.test", ["bob@example.test"], "Plan", "Dear Bob,\nthe plan.\n",
                  cc=["carol@example.test"], attachments=[tmp_path / "plan.pdf"])
    view = text_view(raw)
    assert view.splitlines()[:2] == ["From:    alice@example.test", "To:      bob@example.test"]
    assert "Cc:      carol@example.test" in view and "Subject: Plan" in view and "Date:" in view
    assert "\n\nDear Bob,\nthe plan.\n\n[attachment: plan.pdf (application/pdf, 900 bytes)]" in view


def test_an_html_only_message_shows_its_text():
    raw = (b"From: a@example.test\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<html><style>p{}</style><p>Hello &amp; welcome</p><script>x()</script><br>bye</html>\r\n")
    assert text_view(raw).endswith("\n\nHello & welcome\n\nbye")


def test_escape_sequences_in_headers_and_text_never_reach_the_terminal():
    raw = (b"From: a@example.test\r\nSubject: hi \x1b]0;pwned\x07there\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           b"line one \x1b[2J\xe2\x80\xaeevil\r\n\r\nline three\x1b]52;c;ZXZpbA==\x07\r\n")
    view = text_view(raw)
    assert "\x1b" not in view and "\u202e" not in view and "\x07" not in view
    assert view.endswith("\n\nline one evil\n\nline three") and "Subject: hi there" in view


def test_a_broken_charset_still_shows_something():
    raw = (b"From: a@example.test\r\nContent-Type: text/plain; charset=x-nonsense\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\nbonjour \xe9t\xe9\r\n")
    assert "bonjour" in text_view(raw)
