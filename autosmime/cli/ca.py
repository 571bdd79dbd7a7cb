"""``autosmime ca init`` / ``autosmime ca serve``: the embedded S/MIME certificate authority.

    $ autosmime ca init --dir /srv/ca --name "Example Mail CA" --domain example.test
    $ autosmime ca serve --dir /srv/ca --db sqlite:////srv/ca/ca.db --listen 127.0.0.1:8555 \\
          --smtp 127.0.0.1:25 --inbound-smtp 127.0.0.1:2526 --dns-zone /srv/stack/dns.zone

``serve`` prints ``KEY=VALUE`` lines once it listens (CA_URL, CA_TRUST,
CA_INBOUND_SMTP, CA_MAIL_FROM) and runs until interrupted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from autosmime.errors import UsageError

if TYPE_CHECKING:
    from autosmime.servers.ca.inbound import IMAPPoller


@click.group("ca")
def ca_group() -> None:
    """Run autosmime's own S/MIME certificate authority (ACME, RFC 8823)."""


@ca_group.command("init")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the CA's keys, certificates and settings (created).")
@click.option("--name", default="Example Mail CA", show_default=True, help="The CA's name.")
@click.option("--domain", default="example.test", show_default=True,
              help="Mail domain the challenge mails come from (DKIM-signed for it).")
@click.option("--validity-days", default=365, show_default=True, type=click.IntRange(1, 825),
              help="Default certificate lifetime.")
def init_cmd(directory: Path, name: str, domain: str, validity_days: int) -> None:
    """Create a root and an issuing CA (keys encrypted at rest) and the CA's DKIM key.

    The key passphrase is $AUTOSMIME_CA_PASSPHRASE when set, else a random one
    written to DIR/passphrase (mode 0600).
    """
    from autosmime.servers.ca.authority import PASSPHRASE_ENV, Authority

    ca = Authority.init(directory, name=name, domain=domain, validity_days=validity_days)
    click.echo(f"CA_DIR={ca.directory}")
    click.echo(f"CA_TRUST={ca.directory / 'ca.pem'}")
    click.echo(f"CA_DNS_ZONE={ca.directory / 'dns.zone'}")
    click.echo(f"CA_MAIL_FROM={ca.mail_from}")
    where = f"${PASSPHRASE_ENV}" if os.environ.get(PASSPHRASE_ENV) else str(ca.directory / "passphrase")
    click.echo(f"CA_PASSPHRASE_FROM={where}")


@ca_group.command("serve")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The CA directory made by 'ca init'.")
@click.option("--db", "db_url", required=True, help="SQLAlchemy URL: sqlite:///FILE or postgresql://...")
@click.option("--listen", required=True, help="HOST:PORT for HTTP (ACME, CRL, ARI).")
@click.option("--smtp", required=True, help="HOST:PORT of the relay the challenge mails are sent through.")
@click.option("--inbound-smtp", help="HOST:PORT for the SMTP listener that receives replies.")
@click.option("--inbound-imap", help="imaps://USER@HOST:PORT[/FOLDER] (or imap:// with STARTTLS) to poll for replies.")
@click.option("--inbound-imap-password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Password for --inbound-imap (else $AUTOSMIME_CA_IMAP_PASSWORD).")
@click.option("--inbound-imap-ca", type=click.Path(dir_okay=False, path_type=Path),
              help="CA file to verify the IMAP server's TLS certificate with.")
@click.option("--dns-zone", "dns_zones", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Zone file with DKIM TXT records (repeatable); default: real DNS.")
@click.option("--base-url", help="Public URL of the HTTP listener (default http://LISTEN).")
@click.option("--validity-days", type=click.IntRange(1, 825), help="Certificate lifetime (default: from ca init).")
@click.option("--no-prelint", is_flag=True, help="Skip pkilint before signing (S/MIME BR 4.3.1.2 requires it).")
def serve_cmd(directory: Path, db_url: str, listen: str, smtp: str, inbound_smtp: str | None,
              inbound_imap: str | None, inbound_imap_password_file: Path | None, inbound_imap_ca: Path | None,
              dns_zones: tuple[Path, ...], base_url: str | None, validity_days: int | None,
              no_prelint: bool) -> None:
    """Serve ACME (RFC 8555 + RFC 8823) until interrupted."""
    import sys

    from autosmime.servers.ca.server import CAServer, parse_hostport
    from autosmime.servers.ca.settings import Settings

    if inbound_smtp and inbound_imap:
        raise UsageError("give --inbound-smtp or --inbound-imap, not both")
    poller = _imap_poller(inbound_imap, inbound_imap_password_file, inbound_imap_ca) if inbound_imap else None
    server = CAServer(directory, db_url, listen=parse_hostport(listen), smtp=parse_hostport(smtp),
                      inbound_smtp=parse_hostport(inbound_smtp) if inbound_smtp else None,
                      inbound_imap=poller, dns_zones=list(dns_zones), base_url=base_url,
                      settings=Settings(validity_days=validity_days, prelint=not no_prelint))
    def ready() -> None:
        click.echo(f"CA_URL={server.directory_url}")
        click.echo(f"CA_TRUST={server.authority.directory / 'ca.pem'}")
        click.echo(f"CA_MAIL_FROM={server.authority.mail_from}")
        if server.inbound is not None:
            click.echo(f"CA_INBOUND_SMTP={server.inbound.host}:{server.inbound.port}")
        sys.stdout.flush()

    server.serve_forever(on_ready=ready)


def _imap_poller(url: str, password_file: Path | None, ca_file: Path | None) -> IMAPPoller:
    import ssl
    from urllib.parse import unquote, urlsplit

    from autosmime.servers.ca.inbound import IMAPPoller

    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
        raise UsageError("--inbound-imap must look like imaps://USER@HOST:PORT[/FOLDER]")
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError):
            raise UsageError(f"cannot read a password from {password_file}") from None
    else:
        password = os.environ.get("AUTOSMIME_CA_IMAP_PASSWORD", "")
        if not password:
            raise UsageError("--inbound-imap needs --inbound-imap-password-file or $AUTOSMIME_CA_IMAP_PASSWORD")
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    return IMAPPoller(lambda raw: None, parts.hostname, parts.port or (993 if parts.scheme == "imaps" else 143),
                      unquote(parts.username), password, use_ssl=parts.scheme == "imaps",
                      folder=unquote(parts.path.lstrip("/")) or "INBOX", ssl_context=context)


def register(group: click.Group) -> None:
    group.add_command(ca_group)
