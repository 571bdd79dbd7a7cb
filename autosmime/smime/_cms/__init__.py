"""Low-level CMS (RFC 5652) structures: bytes in, DER out, and back; no MIME here."""
