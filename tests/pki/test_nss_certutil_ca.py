"""A CA made with NSS certutil, as test labs and many companies make theirs: autosmime agrees with NSS.

    $ python -m pytest tests/pki/test_nss_certutil_ca.py -q

certutil's root has basicConstraints cA *not* critical and no keyUsage; its
leaves carry only what is asked for (by default a SAN and nothing else: no
extendedKeyUsage). Each leaf below is judged by NSS itself (``certutil -V
-u S`` for an e-mail signer, ``-u R`` for an e-mail recipient) and by
:func:`autosmime.pki.validate.validate` with purpose "sign" / "encrypt":
the verdicts must be the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autosmime.errors import UntrustedSigner
from autosmime.pki.validate import validate, validate_signer
from tests.pki.issuers import Issued, certutil_leaf, load, nss_certutil_ca, nss_verdict

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def certutil_ca(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    return nss_certutil_ca(Path(tmp_path_factory.mktemp("certutil-ca")))


def test_the_certutil_shapes_are_what_we_think(certutil_ca):
    from cryptography import x509

    root = load(certutil_ca.root)[0]
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.value.ca and not bc.critical
    leaf = load(certutil_ca.user.cert)[0]
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)


def test_certutil_leaf_without_eku_under_non_critical_root_is_trusted(certutil_ca):
    # Before issue 9: "has no extended key usage, so it is not for e-mail".
    leaf, root = load(certutil_ca.user.cert)[0], load(certutil_ca.root)[0]
    assert nss_verdict(certutil_ca, "alice", "S") and nss_verdict(certutil_ca, "alice", "R")
    for purpose in ("sign", "encrypt"):
        path = validate(leaf, [], [root], purpose=purpose)  # type: ignore[arg-type]
        assert path.chain == (leaf, root)
        assert sorted(n.code for n in path.notes) == ["bc-not-critical", "no-eku"]
    assert validate_signer(leaf, [], [root]) == [leaf, root]


def test_non_critical_basic_constraints_root_with_eku_leaf(certutil_ca):
    # Before issue 9: the root alone was refused ("incorrect criticality"), whatever the leaf.
    leaf = certutil_leaf(certutil_ca, "erin", 30, ["--extKeyUsage", "emailProtection",
                                                   "--keyUsage", "digitalSignature,keyEncipherment"])
    path = validate(leaf, [], load(certutil_ca.root))
    assert [n.code for n in path.notes] == ["bc-not-critical"]


# nickname, serial, certutil options, NSS's verdicts (sign, encrypt) asserted by certutil -V as well
LEAVES = [
    ("plain", 10, [], (True, True)),
    ("serverauth", 11, ["--extKeyUsage", "serverAuth"], (False, False)),
    ("emailprot", 12, ["--extKeyUsage", "emailProtection,serverAuth"], (True, True)),
    ("certsign", 13, ["--keyUsage", "certSigning"], (False, False)),
    ("digsig", 14, ["--keyUsage", "digitalSignature"], (True, False)),
    ("keyenc", 15, ["--keyUsage", "keyEncipherment"], (False, True)),
    ("nonrep", 16, ["--keyUsage", "nonRepudiation"], (True, False)),
    ("keyagree-rsa", 17, ["--keyUsage", "keyAgreement"], (False, False)),
]


@pytest.mark.parametrize("nickname,serial,options,expected", LEAVES, ids=[leaf[0] for leaf in LEAVES])
def test_same_verdict_as_nss(certutil_ca, nickname, serial, options, expected):
    leaf = certutil_leaf(certutil_ca, nickname, serial, options)
    root = load(certutil_ca.root)
    nss = (nss_verdict(certutil_ca, nickname, "S"), nss_verdict(certutil_ca, nickname, "R"))
    assert nss == expected, "NSS changed its mind: update the table"
    ours = []
    for purpose in ("sign", "encrypt"):
        try:
            validate(leaf, [], root, purpose=purpose)  # type: ignore[arg-type]
            ours.append(True)
        except UntrustedSigner as e:
            text = str(e)
            assert "\n" not in text and f"CN={nickname}" in text, text  # one line, naming the certificate
            ours.append(False)
    assert tuple(ours) == nss
