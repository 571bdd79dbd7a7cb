"""Known peer limitations, gated on the installed version, with the version that lifts them.

    >>> from tests.interop.gaps import nss_ecdh
    >>> nss_ecdh((3, 87, 1))
    'NSS 3.87.1 cannot encrypt or decrypt ECDH (kari) CMS (needs >= 3.100)'
    >>> nss_ecdh((3, 110, 0)) is None
    True

Each function returns None when the peer should succeed, else the reason.
Sources: smime-crypto.md §1, §4, §6 (measured) and the peers' release notes.
"""

from __future__ import annotations

from tests.interop.peers import Version, tool_version


def _v(version: Version | None) -> str:
    return ".".join(map(str, version or ()))


def _first(*reasons: str | None) -> str | None:
    found = [r for r in reasons if r]
    return "; ".join(found) or None


# --- gpgsm ----------------------------------------------------------------


def gpgsm_ecc(v: Version | None = None) -> str | None:
    v = v or tool_version("gpgsm")
    if v and v < (2, 2, 42):
        return f"gpgsm {_v(v)} has no ECC: EC keys cannot be imported or used (needs >= 2.2.42 / 2.4)"
    return None


def gpgsm_pbes2_p12(v: Version | None = None) -> str | None:
    v = v or tool_version("gpgsm")
    if v and v < (2, 2, 42):
        return (f"gpgsm {_v(v)} cannot import PBES2 PKCS#12 (needs >= 2.2.42, T6536); "
                "use the legacy 3DES export")
    return None


GPGSM_OAEP = "gpgsm cannot decrypt RSA-OAEP (no version can: no OAEP in gnupg/libksba)"
GPGSM_GCM_ICV16 = ("gpgsm rejects AES-GCM with aes-ICVlen=16, which OpenSSL requires "
                   "(libksba, no version fixes it)")


def gpgsm_decrypt(profile: str, kind: str) -> str | None:
    """Why gpgsm cannot open autosmime's ``profile`` output for a ``kind`` key, if it cannot."""
    if profile == "modern":
        return _first(GPGSM_GCM_ICV16, GPGSM_OAEP if kind == "rsa" else gpgsm_ecc())
    return gpgsm_ecc() if kind == "ec" else None


# --- NSS ------------------------------------------------------------------


NSS_AUTHENV = "NSS has no AuthEnvelopedData (AES-GCM) at all (3.87 and 3.110 measured)"


def nss_oaep(v: Version | None = None) -> str | None:
    v = v or tool_version("nss")
    if v and v < (3, 100):
        return f"NSS {_v(v)} cannot decrypt RSA-OAEP (needs >= 3.100)"
    return None


def nss_ecdh(v: Version | None = None) -> str | None:
    v = v or tool_version("nss")
    if v and v < (3, 100):
        return f"NSS {_v(v)} cannot encrypt or decrypt ECDH (kari) CMS (needs >= 3.100)"
    return None


def nss_foreign_kari(v: Version | None = None) -> str | None:
    """Measured here: 3.87 rejects the whole message, so its RSA recipient cannot read it either."""
    v = v or tool_version("nss")
    if v and v < (3, 100):
        return (f"NSS {_v(v)} rejects any message with a kari (ECDH) RecipientInfo, even for its "
                "RSA recipient: SEC_ERROR_BAD_DER (ECDH arrived in 3.100; later versions unmeasured)")
    return None


def nss_decrypt(profile: str, kind: str) -> str | None:
    if profile == "modern":
        return _first(NSS_AUTHENV, nss_oaep() if kind == "rsa" else nss_ecdh())
    return nss_ecdh() if kind == "ec" else None
