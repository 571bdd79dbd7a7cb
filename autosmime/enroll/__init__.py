"""ACME for S/MIME (RFC 8823), client side: protocol code only, no flows.

- :mod:`autosmime.enroll.messages`: the ``email`` identifier, the ``email-reply-00`` challenge,
  newOrder with ``replaces`` (RFC 9773), the ARI certificate identifier.
- :mod:`autosmime.enroll.challenges`: token-part1/part2, the key authorisation in both readings,
  the challenge mail's checks (headers, DKIM) and the response mail.
- :mod:`autosmime.enroll.client`: one ACME client over HTTPS (plain http only to loopback).
- :mod:`autosmime.enroll.renewal`: when a certificate is due (ARI window, else 2/3 of its lifetime).

The flows (enrol, renew, revoke) that tie these to the mailbox and the vault are in
:mod:`autosmime.agent.enrol`.
"""
