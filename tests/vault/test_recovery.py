"""Recovery code: enough entropy, forgiving to type, strict about what cannot be a code."""

from __future__ import annotations

import math
import stat

import pytest

from autosmime.errors import WrongRecoveryCode
from autosmime.vault import recovery


def test_code_shape_and_entropy():
    codes = {recovery.new_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in list(codes)[:50]:
        groups = code.split("-")
        assert all(len(g) == 4 for g in groups) and len(groups) == 7
        assert set(code.replace("-", "")) <= set(recovery.ALPHABET)
    assert len(recovery.ALPHABET) == 32 and not set("ILOU") & set(recovery.ALPHABET)
    assert recovery.LENGTH * math.log2(len(recovery.ALPHABET)) >= 120
    # every symbol appears at every position over many codes (no fixed characters)
    chars = [c.replace("-", "") for c in codes]
    for pos in (0, 13, 27):
        assert len({c[pos] for c in chars}) == 32


def test_normalize_round_trips_what_people_type():
    code = recovery.new_code()
    bare = code.replace("-", "")
    typed = [
        code, bare, code.lower(), " ".join(code.split("-")), f"  {bare[:10]} - {bare[10:]}\n",
        bare.replace("0", "O").replace("1", "I"), bare.replace("1", "l").lower(),
    ]
    for text in typed:
        assert recovery.normalize(text) == code


@pytest.mark.parametrize("bad", ["", "ABCD", "ABCD-" * 6, "UUUU-" * 6 + "UUUU", "ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-234*", "A" * 29])
def test_malformed_codes_are_rejected(bad):
    with pytest.raises(WrongRecoveryCode):
        recovery.normalize(bad)


def test_save_load_and_get_or_create(tmp_path):
    home = tmp_path / "home"
    assert recovery.load_code(home) is None
    code = recovery.get_or_create_code(home)
    assert recovery.get_or_create_code(home) == code == recovery.load_code(home)
    path = home / recovery.CODE_FILE  # no real keyring here: the 0600 file is used
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other = recovery.new_code()
    recovery.save_code(home, other.lower())
    assert recovery.load_code(home) == other
