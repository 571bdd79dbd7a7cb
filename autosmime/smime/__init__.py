"""The S/MIME message engine: sign, verify, encrypt, decrypt, and read through nested layers.

    >>> from autosmime.smime import sign, verify, encrypt, sign_and_encrypt, decrypt, read
    >>> out = encrypt(sign(raw, key, cert), [bob_cert], sender_cert=cert)   # doctest: +SKIP
    >>> out = sign_and_encrypt(raw, key, cert, [bob_cert])                  # doctest: +SKIP
    >>> read(out, keys=[(bob_key, bob_cert)], trust_roots=[ca]).message    # doctest: +SKIP
"""

from autosmime.smime.decrypt import decrypt
from autosmime.smime.encrypt import encrypt, sign_and_encrypt
from autosmime.smime.models import DecryptResult, ReadResult, VerifyResult
from autosmime.smime.read import read
from autosmime.smime.sign import sign
from autosmime.smime.verify import verify

__all__ = ["sign", "verify", "encrypt", "sign_and_encrypt", "decrypt", "read",
           "VerifyResult", "DecryptResult", "ReadResult"]
