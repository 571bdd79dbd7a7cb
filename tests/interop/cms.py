"""Name the algorithms inside a CMS blob, so each matrix cell states what was really sent.

    >>> from tests.interop.cms import describe
    >>> describe(der)  # doctest: +SKIP
    {'type': 'enveloped_data', 'cipher': 'aes256_cbc', 'recipients': ['ktri:rsaes_pkcs1v15'], 'ber': False}

Read-only and independent of autosmime's own parser: a test oracle.
"""

from __future__ import annotations

from asn1crypto import cms

_KARI = {
    "1.3.133.16.840.63.0.2": "ecdh-sha1kdf",
    "1.3.132.1.11.0": "ecdh-sha224kdf",
    "1.3.132.1.11.1": "ecdh-sha256kdf",
    "1.3.132.1.11.2": "ecdh-sha384kdf",
    "1.3.132.1.11.3": "ecdh-sha512kdf",
}


def _is_der(der: bytes) -> bool:
    return cms.ContentInfo.load(der).dump(force=True) == der


def describe(der: bytes) -> dict:
    info = cms.ContentInfo.load(der, strict=True)
    kind = info["content_type"].native
    out: dict = {"type": kind, "ber": not _is_der(der)}
    content = info["content"]
    if kind in ("enveloped_data", "authenticated_enveloped_data"):
        eci = content["encrypted_content_info"] if kind == "enveloped_data" \
            else content["auth_encrypted_content_info"]
        out["cipher"] = eci["content_encryption_algorithm"]["algorithm"].native
        recipients = []
        for ri in content["recipient_infos"]:
            name, value = ri.name, ri.chosen
            if name == "ktri":
                recipients.append(f"ktri:{value['key_encryption_algorithm']['algorithm'].native}"
                                  f":{value['rid'].name}")
            elif name == "kari":
                alg = value["key_encryption_algorithm"]
                wrap = cms.KeyEncryptionAlgorithm.load(alg["parameters"].dump())["algorithm"].native
                scheme = _KARI.get(alg["algorithm"].dotted, alg["algorithm"].dotted)
                recipients.append(f"kari:{scheme}:{wrap}")
            else:
                recipients.append(name)
        out["recipients"] = recipients
        if kind == "authenticated_enveloped_data":
            # GCMParameters ::= SEQUENCE { aes-nonce, aes-ICVlen DEFAULT 12 }
            params = eci["content_encryption_algorithm"]["parameters"].native
            out["icv_len"] = int(params.get("1", 12)) if isinstance(params, dict) else None
    elif kind == "signed_data":
        out["detached"] = content["encap_content_info"]["content"].native is None
        out["digests"] = [d["algorithm"].native for d in content["digest_algorithms"]]
        out["signatures"] = [si["signature_algorithm"]["algorithm"].native for si in content["signer_infos"]]
    return out
