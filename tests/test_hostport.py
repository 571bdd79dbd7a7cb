"""The one HOST:PORT parser: what each server and command accepts, and what it refuses."""

from __future__ import annotations

import pytest

from autosmime._hostport import parse_hostport


@pytest.mark.parametrize(("value", "kwargs", "expected"), [
    ("mail.example.test:993", {}, ("mail.example.test", 993)),
    ("  mail.example.test:993 ", {}, ("mail.example.test", 993)),
    ("mail.example.test", {"default_port": 143}, ("mail.example.test", 143)),
    ("[::1]:8443", {}, ("::1", 8443)),
    ("[2001:db8::1]", {"default_port": 25}, ("2001:db8::1", 25)),
    ("::1", {"default_port": 25}, ("::1", 25)),
    ("fe80::1:2", {"default_port": 25}, ("fe80::1:2", 25)),       # all colons belong to the address
    (":4000", {"default_host": "127.0.0.1"}, ("127.0.0.1", 4000)),
    ("4000", {"default_host": "127.0.0.1"}, ("127.0.0.1", 4000)),
    ("127.0.0.1:0", {"listen": True}, ("127.0.0.1", 0)),
    ("_dmarc.example.test:53", {}, ("_dmarc.example.test", 53)),
])
def test_accepted(value, kwargs, expected):
    assert parse_hostport(value, **kwargs) == expected


@pytest.mark.parametrize(("value", "kwargs", "reason"), [
    ("127.0.0.1:38465:99999", {}, "several colons"),
    ("a:b:c", {"default_port": 1}, "several colons"),
    ("[mail.example.test]:143", {}, "brackets"),
    ("[::1", {}, "brackets"),
    ("[::1]143", {}, "[ADDRESS]:PORT"),
    ("mail.example.test", {}, "missing port"),
    (":143", {}, "missing host"),
    ("mail example:143", {}, "not a host name"),
    ("mail.example.test:http", {}, "bad port"),
    ("mail.example.test:65536", {}, "bad port"),
    ("mail.example.test:0", {}, "bad port"),
    ("mail.example.test:-1", {}, "bad port"),
])
def test_refused(value, kwargs, reason):
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_hostport(value, **kwargs)
