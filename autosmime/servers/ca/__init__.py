"""autosmime's own S/MIME certificate authority: ACME (RFC 8555) with email-reply-00 (RFC 8823).

    $ autosmime ca init --dir ca --domain ca.example
    $ autosmime ca serve --dir ca --db sqlite:///ca/ca.db --listen 127.0.0.1:8555 \\
          --smtp 127.0.0.1:25 --inbound-smtp 127.0.0.1:2526 --dns-zone mail.zone

or from Python (ports 0 = free ports, read back from the object)::

    from autosmime.servers.ca.server import CAServer
    server = CAServer("ca", "sqlite:///ca/ca.db", smtp=("127.0.0.1", 25),
                      inbound_smtp=("127.0.0.1", 0), dns_zones=["mail.zone"]).start()
    server.directory_url, server.inbound_smtp_port
    server.stop()

Modules, in the order a request meets them:

- :mod:`.app` — the Starlette routes (the endpoint list is there);
- :mod:`.jws` — JWS parsing and checks (josepy / acme.jws);
- :mod:`.service` — the ACME resources and the challenge state machine;
- :mod:`.mail` — tokens, the challenge mail, its DKIM signature, outboxes;
- :mod:`.inbound` / :mod:`.reply` — replies over SMTP or IMAP, and their checks;
- :mod:`.dns` — DKIM key look-ups: zone files (format described there) or real DNS;
- :mod:`.profile` — CSR checks, the Mailbox-validated Strict profile, pre-issuance
  linting, the CRL;
- :mod:`.authority` — the CA directory (keys encrypted at rest);
- :mod:`.storage` — SQLAlchemy Core tables (SQLite or PostgreSQL);
- :mod:`.settings`, :mod:`.errors` — limits and ACME problem documents.
"""
