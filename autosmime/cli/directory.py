"""``autosmime directory serve``: run the key directory.

    $ autosmime directory serve --db sqlite:///dir.db --listen 127.0.0.1:8480 --trust ca.pem --smtp 127.0.0.1:25
"""

from __future__ import annotations

from pathlib import Path

import click


def register(group: click.Group) -> None:
    group.add_command(directory)


@click.group()
def directory() -> None:
    """The key directory server."""


@directory.command("serve")
@click.option("--db", required=True, metavar="URL", help="sqlite:///FILE (default kind) or postgresql://USER@HOST/DB.")
@click.option("--listen", required=True, metavar="HOST:PORT", help="Address to serve HTTP on.")
@click.option("--trust", "trust", multiple=True, required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A CA (PEM) whose certificates may be published; repeatable.")
@click.option("--smtp", required=True, metavar="HOST:PORT", help="SMTP relay for the confirmation mails.")
@click.option("--log-key", type=click.Path(dir_okay=False, path_type=Path),
              help="Ed25519 key (PEM) signing the log's checkpoints; created if missing (default: kept in the DB).")
@click.option("--fast-path-ca", "fast_path", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="An autosmime CA whose fresh certificates skip the confirmation mail (never the key proof).")
@click.option("--origin", default="autosmime-directory", show_default=True, help="The log's name in checkpoints.")
@click.option("--public-url", default="", help="The URL users reach this directory at (named in mails).")
@click.option("--mail-from", default="keys@autosmime.invalid", show_default=True, help="Sender of the mails.")
def serve(db: str, listen: str, trust: tuple[Path, ...], smtp: str, log_key: Path | None, fast_path: tuple[Path, ...],
          origin: str, public_url: str, mail_from: str) -> None:
    """Serve the directory until interrupted."""
    from autosmime.pki.keys import load_certificates, read_file
    from autosmime.servers.directory.run import parse_hostport
    from autosmime.servers.directory.run import serve as run
    from autosmime.servers.directory.service import Config

    def certs(paths: tuple[Path, ...]) -> list:
        return [c for p in paths for c in load_certificates(read_file(p))]

    host, port = parse_hostport(listen)
    config = Config(db=db, trust=certs(trust), smtp=parse_hostport(smtp, 25), log_key=log_key, origin=origin,
                    public_url=public_url, mail_from=mail_from, fast_path_cas=certs(fast_path))
    click.echo(f"autosmime: directory serving on http://{host}:{port}", err=True)
    run(config, host, port)
