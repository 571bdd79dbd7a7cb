"""``autosmime publish``, ``lookup`` and ``monitor``: my certificate in the key directory, and others' from it.

    $ autosmime --home ~/.as publish --directory http://127.0.0.1:8480
    $ autosmime --home ~/.as lookup bob@example.test --json
    $ autosmime --home ~/.as monitor
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from autosmime.cli import agent_for
from autosmime.cli._output import plural


def register(group: click.Group) -> None:
    for command in (publish, lookup, monitor):
        group.add_command(command)


_DIRECTORY = click.option("--directory", metavar="URL", envvar="AUTOSMIME_DIRECTORY",
                          help="The key directory (default: the one last published to).")


@click.command()
@_DIRECTORY
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object on standard output.")
@click.pass_context
def publish(ctx: click.Context, directory: str | None, as_json: bool) -> None:
    """Publish my encryption certificate (confirms the directory's mail by itself)."""
    from autosmime.agent.publish import publish as run

    done = run(agent_for(ctx), directory)
    if as_json:
        click.echo(json.dumps({"address": done.address, "sha256": done.sha256, "leaf_index": done.leaf_index,
                               "tree_size": done.tree_size, "mailbox_proof": done.mailbox_proof,
                               "already": done.already}, indent=2))
        return
    if done.already:
        click.echo(f"already published {done.address} {done.sha256} at log entry {done.leaf_index} "
                   f"(log size {done.tree_size}): nothing to do")
        return
    click.echo(f"published {done.address} {done.sha256} at log entry {done.leaf_index} "
               f"(log size {done.tree_size}, mailbox proven by {done.mailbox_proof})")


@click.command()
@click.argument("address")
@_DIRECTORY
@click.option("--trust", "trust", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Extra CA (PEM) trusted for recipients' certificates; repeatable.")
@click.option("--smimea", is_flag=True, help="Also ask DNS (SMIMEA) when nothing else is found.")
@click.option("--ldap", "ldap_url", metavar="URL",
              help="Also ask this LDAP directory, last (ldaps://HOST[/BASE-DN], or ldap:// with StartTLS); "
                   "remembered for later lookups and send. 'off' forgets it. Default: $AUTOSMIME_LDAP, "
                   "else the remembered one.")
@click.option("--ldap-base", metavar="DN", help="Base DN of the LDAP search (default: the URL's, else the "
              "server's naming contexts; $AUTOSMIME_LDAP_BASE with $AUTOSMIME_LDAP).")
@click.option("--ldap-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="CA (PEM) that verifies the LDAP server's TLS certificate (default: the system's).")
@click.option("--ldap-bind-dn", metavar="DN", help="Simple bind as DN (default: anonymous); needs --ldap-password-file.")
@click.option("--ldap-password-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="File holding the bind password (the file's path is remembered, never the password).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def lookup(ctx: click.Context, address: str, directory: str | None, trust: tuple[Path, ...], smimea: bool,
           ldap_url: str | None, ldap_base: str | None, ldap_ca: Path | None, ldap_bind_dn: str | None,
           ldap_password_file: Path | None, as_json: bool) -> None:
    """The certificate to encrypt to for ADDRESS: contacts, then the directory (proven in its log), then
    SMIMEA and LDAP when asked."""
    from cryptography.hazmat.primitives import serialization

    from autosmime.agent.lookup import LdapSetting
    from autosmime.agent.lookup import lookup as run
    from autosmime.errors import UsageError
    from autosmime.pki.certs import fingerprint
    from autosmime.pki.keys import load_certificates, read_file

    if (ldap_ca or ldap_bind_dn or ldap_password_file) and not ldap_url:
        raise UsageError("--ldap-ca, --ldap-bind-dn and --ldap-password-file go with --ldap URL")
    if bool(ldap_bind_dn) != bool(ldap_password_file):
        raise UsageError("--ldap-bind-dn and --ldap-password-file go together")
    ldap = None
    if ldap_url:
        ldap = LdapSetting(ldap_url, ldap_base, str(ldap_ca) if ldap_ca else None, ldap_bind_dn,
                           str(ldap_password_file) if ldap_password_file else None)
    roots = [c for p in trust for c in load_certificates(read_file(p))]
    found = run(agent_for(ctx), address, directory=directory, extra_roots=roots, smimea=smimea, ldap=ldap,
                ldap_base=ldap_base)
    sha = fingerprint(found.cert)
    if as_json:
        click.echo(json.dumps({
            "address": found.address, "source": found.source, "sha256": sha,
            "not_before": found.cert.not_valid_before_utc.isoformat(),
            "not_after": found.cert.not_valid_after_utc.isoformat(),
            "certificate_pem": found.cert.public_bytes(serialization.Encoding.PEM).decode(), "notes": found.notes,
        }, indent=2))
        return
    click.echo(f"{found.address} {sha} from {found.source}, valid until "
               f"{found.cert.not_valid_after_utc:%Y-%m-%d}")
    for note in found.notes:
        click.echo(f"autosmime: {note}", err=True)


@click.command()
@_DIRECTORY
@click.option("--json", "as_json", is_flag=True,
              help="Print the history as one JSON object on standard output (still exit 1 for a certificate "
                   "never held).")
@click.pass_context
def monitor(ctx: click.Context, directory: str | None, as_json: bool) -> None:
    """My address's history in the directory's log; exit 1 if it shows a certificate I never held."""
    from autosmime.agent.publish import monitor as run

    events = run(agent_for(ctx), directory)
    foreign = sum(not e.mine for e in events)
    if as_json:
        click.echo(json.dumps({"entries": [{"leaf_index": e.leaf_index, "when": e.when, "op": e.op,
                                            "sha256": e.sha256, "mine": e.mine} for e in events],
                               "foreign": foreign}, indent=2))
    else:
        for e in events:
            mark = "mine" if e.mine else "NOT MINE"
            click.echo(f"{e.leaf_index:>8}  {e.when}  {e.op:<9}  {e.sha256}  {mark}")
    if not events:
        click.echo("autosmime: no entries for this address", err=True)
    if foreign:
        names = "names a certificate" if foreign == 1 else "name certificates"
        click.echo(f"autosmime: warning: {plural(foreign, 'log entry', 'log entries')} {names} this device never held",
                   err=True)
        ctx.exit(1)
