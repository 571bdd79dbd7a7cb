"""``autosmime enroll``, ``renew``, ``revoke``: certificates over ACME for S/MIME (RFC 8823).

    $ autosmime --home ~/.autosmime enroll --ca https://ca.example/acme/directory
    $ autosmime --home ~/.autosmime renew            # only when due (ARI, else 2/3 of the lifetime)
    $ autosmime --home ~/.autosmime revoke --reason keyCompromise

The flows are in :mod:`autosmime.agent.enrol`; this module parses and prints.
Output: one line on stdout saying what happened (or, with ``--json``, one JSON object:
docs/cli.md); the backup status on stderr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from autosmime.cli import agent_for
from autosmime.cli._output import Progress, emit_json, progress

if TYPE_CHECKING:
    from autosmime.agent.context import Agent
    from autosmime.agent.enrol import EnrolResult
    from autosmime.agent.outcomes import BackupOutcome

KEY_TYPES = ("rsa3072", "rsa2048", "rsa4096", "p256")
REVOKE_REASONS = ("keyCompromise", "superseded", "cessationOfOperation")


def register(group: click.Group) -> None:
    group.add_command(enroll)
    group.add_command(renew)
    group.add_command(revoke)


def _describe(cert) -> str:
    from cryptography.hazmat.primitives import hashes

    issuer = cert.issuer.rfc4514_string()
    until = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"issued by {issuer}, valid until {until}, SHA-256 {cert.fingerprint(hashes.SHA256()).hex()}"


def _backup_lines(outcome: BackupOutcome | None, error: str | None = None) -> None:
    from autosmime.cli.backup import backup_lines

    if error is not None:
        click.echo(f"autosmime: warning: the new key is not backed up yet: {error}", err=True)
    if outcome is not None:
        for line in backup_lines(outcome):
            click.echo(f"autosmime: {line}", err=True)


_JSON = click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object on standard output.")


def _cert_json(cert: Any) -> dict[str, Any]:
    from autosmime.pki.certs import fingerprint

    return {"sha256": fingerprint(cert), "issuer": cert.issuer.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.isoformat(), "not_after": cert.not_valid_after_utc.isoformat()}


def _result_json(result: EnrolResult) -> dict[str, Any]:
    from autosmime.cli.backup import backup_json

    return {"address": result.address, "certificate": _cert_json(result.cert),
            "backup": backup_json(result.backup) if result.backup is not None else None,
            "backup_error": result.backup_error}


def _agent(ctx: click.Context, spinner: Progress) -> Agent:
    """The agent, its recovery-code display pausing the spinner (a new code is shown once, undisturbed)."""
    agent = agent_for(ctx)
    if agent.present_code is not None:
        agent.present_code = spinner.paused(agent.present_code)
    return agent


@click.command()
@click.option("--ca", "ca_url", metavar="URL", help="The CA's ACME directory URL (default: the last one used).")
@click.option("--ca-trust", metavar="PEM", type=click.Path(dir_okay=False),
              help="CA certificates to trust for the CA's HTTPS (a private CA).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="rsa3072", show_default=True,
              help="The new key, made on this device.")
@_JSON
@click.pass_context
def enroll(ctx: click.Context, ca_url: str | None, ca_trust: str | None, key_type: str, as_json: bool) -> None:
    """Get an S/MIME certificate for your address, answering the CA's challenge mail automatically."""
    from autosmime.agent.enrol import enrol_account

    with progress("enrolling: answering the CA's challenge mail and backing up ...") as spinner:
        result = enrol_account(_agent(ctx, spinner), ca_url=ca_url, trust=ca_trust, key_type=key_type)
    if as_json:
        emit_json(_result_json(result))
        return
    click.echo(f"enrolled {result.address}: {_describe(result.cert)}")
    _backup_lines(result.backup, result.backup_error)


@click.command()
@click.option("--force", is_flag=True, help="Renew now, even if not due.")
@_JSON
@click.pass_context
def renew(ctx: click.Context, force: bool, as_json: bool) -> None:
    """Renew the certificate with a new key when due (the old key is kept to read old mail)."""
    from autosmime.agent.enrol import renew_account

    with progress("renewing when due ...") as spinner:
        decision, result = renew_account(_agent(ctx, spinner), force=force)
    when = decision.when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if as_json:
        emit_json({"renewed": result is not None, "due": decision.due, "renewal_at": when,
                   "decided_by": decision.source, **(_result_json(result) if result is not None else {})})
        return
    if result is None:
        click.echo(f"not due: renewal at {when} ({decision.source}); use --force to renew now")
        return
    click.echo(f"renewed {result.address}: {_describe(result.cert)}")
    _backup_lines(result.backup, result.backup_error)


@click.command()
@click.option("--reason", type=click.Choice(REVOKE_REASONS), default="superseded", show_default=True)
@_JSON
@click.pass_context
def revoke(ctx: click.Context, reason: str, as_json: bool) -> None:
    """Revoke the active certificate (its key stays in the vault to read old mail)."""
    from autosmime.agent.enrol import revoke_account
    from autosmime.cli.backup import backup_json

    cert, outcome = revoke_account(agent_for(ctx), reason=reason)
    if as_json:
        emit_json({"reason": reason, "certificate": _cert_json(cert),
                   "backup": backup_json(outcome) if outcome is not None else None})
        return
    click.echo(f"revoked ({reason}): {_describe(cert)}")
    _backup_lines(outcome)
