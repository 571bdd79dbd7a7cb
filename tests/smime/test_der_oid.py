"""der.oid, written by hand so decryption need not import asn1crypto, encodes as asn1crypto does."""

import random

import pytest
from asn1crypto import core

from autosmime.smime._cms.der import oid


def test_oid_matches_asn1crypto():
    rng = random.Random(9)
    cases = ["1.2.840.113549.1.7.3", "2.16.840.1.101.3.4.1.42", "1.3.101.110", "0.9.2342.19200300.100.1.25",
             "2.999.3", "1.39.0", "2.5.29.17", "1.2.840.113549.1.9.16.3.19"]
    for _ in range(500):
        first = rng.choice([0, 1, 2])
        second = rng.randint(0, 39) if first < 2 else rng.randint(0, 10**6)
        rest = [rng.choice([rng.randint(0, 200), rng.randint(0, 2**40)]) for _ in range(rng.randint(0, 8))]
        cases.append(".".join(map(str, [first, second, *rest])))
    for dotted in cases:
        assert oid(dotted) == core.ObjectIdentifier(dotted).dump(), dotted


@pytest.mark.parametrize("bad", ["1", "3.1", "1.40", "1.-2", "a.b"])
def test_oid_refuses_non_identifiers(bad):
    with pytest.raises(ValueError):
        oid(bad)
