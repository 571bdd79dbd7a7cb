"""The hand parser of Content-Type / Content-Transfer-Encoding answers exactly as the email package."""

from __future__ import annotations

import email
import email.policy
import email.utils

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autosmime.errors import MalformedMessage
from autosmime.smime import mime
from autosmime.smime.mime_params import _email_package, parse_entity_fields


def _parse(fields: tuple[bytes, ...]):
    try:
        return parse_entity_fields.__wrapped__(fields)  # uncached: every example is really parsed
    except MalformedMessage as e:
        return ("error", str(e))


def _reference(fields: tuple[bytes, ...]):
    """The email package on the same fields; where it crashes, we raise MalformedMessage."""
    try:
        return _email_reference(fields)
    except (TypeError, ValueError, LookupError) as e:
        return ("error", f"unreadable Content-Type parameters ({type(e).__name__})")


def _email_reference(fields: tuple[bytes, ...]) -> tuple[str, dict[str, str], str]:
    """The email package on the same fields, independent of the module under test."""
    msg = email.message_from_bytes(b"".join(fields) + b"\r\n", policy=email.policy.compat32)
    params = {}
    for name, value in (msg.get_params() or [])[1:]:
        params[name.lower()] = str(email.utils.collapse_rfc2231_value(value) if isinstance(value, tuple) else value)
    return msg.get_content_type(), params, str(msg.get("content-transfer-encoding", "7bit")).strip().lower()


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._+!#$&^`{|}~",
                 min_size=1, max_size=12)
_quoted = st.lists(st.sampled_from(list('abc XYZ;=/,:()<>@[]?\t') + ['\\"', "\\\\", "\\a"]),
                   max_size=20).map(lambda parts: '"' + "".join(parts) + '"')
_rfc2231 = st.one_of(
    st.tuples(st.sampled_from(["utf-8", "iso-8859-1", "us-ascii", "bogus", ""]), st.sampled_from(["", "en"]),
              st.text(alphabet="abc%20E282AC", max_size=15)).map(lambda t: f"{t[0]}'{t[1]}'{t[2]}"),
    _token,
)


@st.composite
def _param(draw) -> str:
    name = draw(st.sampled_from(["boundary", "Boundary", "charset", "name", "micalg", "protocol",
                                 "smime-type", "x", "filename"]))
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return f"{name}={draw(_token)}"
    if kind == 1:
        return f"{name}={draw(_quoted)}"
    if kind == 2:  # RFC 2231 extended value, maybe split into continuations
        return f"{name}*={draw(_rfc2231)}"
    if kind == 3:
        return "; ".join(f"{name}*{i}{'*' if draw(st.booleans()) else ''}={draw(_rfc2231)}"
                         for i in range(draw(st.integers(1, 3))))
    return draw(st.sampled_from([name, f"{name}=", f"{name} = {draw(_token)}", f"{name}=<{draw(_token)}>",
                                 # quotes without backslashes, where unquote alone must give the answer
                                 f'{name}=a"b', f'{name}="a"b"', f'{name}="', f'{name}=""', f'{name}="<x>"',
                                 f'{name}=<"x">', f'{name}="x', f'{name}=x"', f'{name}="a;b"']))


@st.composite
def _content_type(draw) -> str:
    ctype = draw(st.sampled_from(["text/plain", "Multipart/Signed", "application/pkcs7-mime", "text",
                                  "a/b/c", "", " multipart/mixed ", "application/x-pkcs7-signature"]))
    params = draw(st.lists(_param(), max_size=4))
    seps = [draw(st.sampled_from(["; ", ";", " ;\r\n\t", ";\r\n ", ";; "])) for _ in params]
    return ctype + "".join(s + p for s, p in zip(seps, params))


@st.composite
def _fields(draw) -> tuple[bytes, ...]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            name = draw(st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE", "Content-Type "]))
            value = draw(_content_type())
        else:
            name = draw(st.sampled_from(["Content-Transfer-Encoding", "content-transfer-encoding"]))
            value = draw(st.sampled_from(["base64", " BASE64 ", "7bit", "quoted-printable", "x-uu", ""]))
        sep = draw(st.sampled_from([": ", ":", ":\t", ":  "]))
        out.append(f"{name}{sep}{value}\r\n".encode())
    return tuple(out)


@given(_fields())
@settings(max_examples=600, deadline=None)
def test_generated_fields_parse_as_the_email_package_does(fields):
    assert _parse(fields) == _reference(fields)


# Mutations: arbitrary printable ASCII and the characters the grammar cares about.
_noise = st.lists(st.sampled_from(list(' \t;=/"\\*\'%<>()abcXY0-') + ["\r\n\t", "\r\n "]),
                  max_size=60).map("".join)


@given(st.lists(st.tuples(st.sampled_from(["Content-Type", "content-transfer-encoding"]), _noise), max_size=3))
@settings(max_examples=800, deadline=None)
def test_mutated_fields_parse_as_the_email_package_does(pairs):
    fields = tuple(f"{n}:{v}\r\n".encode() for n, v in pairs)
    assert _parse(fields) == _reference(fields)


@given(st.lists(st.binary(max_size=40), max_size=2))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_after_the_name_parse_as_the_email_package_does(values):
    # 8-bit and control bytes: the fast path must hand these to the email package.
    fields = tuple(b"Content-Type: " + v.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n" for v in values)
    assert _parse(fields) == _reference(fields)


@pytest.mark.parametrize("fields, expected", [
    ((b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;\r\n'
      b'\tboundary="----=_x;y"\r\n',),
     ("multipart/signed", {"protocol": "application/pkcs7-signature", "micalg": "sha-256", "boundary": "----=_x;y"},
      "7bit")),
    ((b"Content-Type: application/octet-stream; name*=utf-8''%E2%82%AC.p7m\r\n",
      b"Content-Transfer-Encoding: Base64\r\n"),
     ("application/octet-stream", {"name": "\u20ac.p7m"}, "base64")),
    ((b"Content-Type: text/plain; name*0=\"a b\"; name*1=c\r\n",), ("text/plain", {"name": "a bc"}, "7bit")),
    ((b"Content-Type: nonsense\r\n",), ("text/plain", {}, "7bit")),
    ((), ("text/plain", {}, "7bit")),
    # A space before the colon ends the header block for the email package: nothing is read.
    ((b"Content-Type : application/pkcs7-mime\r\n",), ("text/plain", {}, "7bit")),
])
def test_known_answers(fields, expected):
    assert parse_entity_fields(fields) == expected
    assert _parse(fields) == expected == _reference(fields)
    assert _email_package(fields) == expected


def test_message_content_type_uses_the_first_field_and_stays_private_to_the_caller():
    m = mime.Message.parse(b"Content-Type: text/html; charset=a\r\nContent-Type: text/plain\r\n\r\nx")
    ct = m.content_type
    assert (ct.value, ct.params) == ("text/html", {"charset": "a"})
    ct.params["charset"] = "changed"  # the parse cache must not see this
    assert m.content_type.params == {"charset": "a"}


def test_message_sees_replaced_fields():
    m = mime.Message.parse(b"Content-Type: text/html\r\nFrom: a@example.test\r\n\r\nx")
    assert m.content_type.value == "text/html" and m.header("From") == "a@example.test"
    m.fields = [b"Content-Type: text/plain\r\n"]
    assert m.content_type.value == "text/plain" and m.header("From") is None


def test_where_the_email_package_crashes_the_message_is_malformed():
    """Python 3.11's email package crashes here (TypeError sorting RFC 2231 parts): malformed for us.
    3.13's reads boundary 0, and so do we: the hand parser follows the installed email package."""
    fields = (b"Content-Type: text/plain; boundary*=0; boundary*0=0\r\n",)
    reference = _reference(fields)
    assert reference in (("error", "unreadable Content-Type parameters (TypeError)"),
                         ("text/plain", {"boundary": "0"}, "7bit"))
    assert _parse(fields) == reference
    if reference[0] == "error":
        with pytest.raises(MalformedMessage):
            parse_entity_fields(fields)
        with pytest.raises(MalformedMessage):
            mime.Message.parse(fields[0] + b"\r\nbody").content_type
    else:
        assert mime.Message.parse(fields[0] + b"\r\nbody").content_type.params == {"boundary": "0"}
