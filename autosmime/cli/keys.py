"""``autosmime import``, ``export`` and ``keys``: the vault from the command line.

    $ autosmime --home ~/.autosmime import alice.p12 --password-file pw.txt
    $ autosmime --home ~/.autosmime keys --json
    $ autosmime --home ~/.autosmime export --out ~/export
    $ autosmime --home ~/.autosmime keys activate 3f2a9c41d7e0b865

Status goes to stderr; only ``keys`` writes to stdout. Passwords and the
recovery code are never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from autosmime.cli import agent_for, home_dir
from autosmime.cli._options import OutFile, is_stdout
from autosmime.cli._output import emit_json, next_steps, plural, progress, say, warn
from autosmime.errors import UsageError

if TYPE_CHECKING:
    from autosmime.vault.store import VaultEntry


def _read_password(path: Path | None, prompt: str) -> bytes:
    """First line of ``path``; else a hidden prompt on a terminal; else empty."""
    if path is not None:
        from autosmime.pki.keys import read_first_line

        return read_first_line(path)
    if sys.stdin.isatty():
        return click.prompt(prompt, hide_input=True, default="", show_default=False).encode("utf-8")
    return b""


def _short(fp: str) -> str:
    return ":".join(fp[i:i + 2] for i in range(0, 16, 2)).upper()


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), help="File whose first line is the .p12 password.")
@click.option("--recovery-code-out", type=OutFile(),
              help="Write the backup recovery code to this file (0600); '-' prints it on standard output.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object on standard output.")
@click.pass_context
def import_cmd(ctx: click.Context, file: Path, password_file: Path | None, recovery_code_out: Path | None,
               as_json: bool) -> None:
    """Import every key and certificate of a PKCS#12 (.p12/.pfx) file, then back up."""
    from autosmime.agent.keys import import_file
    from autosmime.cli.backup import backup_json, backup_lines, code_to_stdout
    from autosmime.pki.keys import read_file

    data = read_file(file)
    password = _read_password(password_file, f"Password for {file.name}")
    with progress(f"importing {file.name} and backing up ...") as spinner, \
            code_to_stdout(ctx, recovery_code_out, spinner, as_json) as (agent, code_out, printed):
        outcome = import_file(agent, data, password, recovery_code_out=code_out)
    if as_json:
        emit_json({"file": str(file),
                   "new": [{"fingerprint": k.fingerprint, "email": k.address, "subject": k.subject,
                            "status": k.status, "kept_active": k.kept_active, "not_for_account": k.not_for_account}
                           for k in outcome.new],
                   "backup": backup_json(outcome.backup, printed)})
        return
    if outcome.new:
        who = ", ".join(sorted({k.address or k.subject for k in outcome.new}))
        say(f"imported {plural(len(outcome.new), 'new key')}: {who}")
    else:
        say(f"every key in {file.name} was already held")
    for key in outcome.new:
        if key.not_for_account:
            warn(f"the key {_short(key.fingerprint)} is for {key.address or key.subject}, not for this account's "
                 f"address {key.not_for_account}: kept and backed up (it opens mail sent to it), "
                 "but not used to sign or as this account's certificate")
        if key.kept_active:
            say(f"kept the CA-issued key {_short(key.kept_active)} active for {key.address}: the new one "
                f"({_short(key.fingerprint)}) is self-signed or short-lived; to use it instead: "
                f"autosmime keys activate {key.fingerprint}")
    for line in backup_lines(outcome.backup):
        say(line)
    if outcome.new:
        next_steps(_after_import(ctx))


def _after_import(ctx: click.Context) -> list[str]:
    """What to run after an import, for the commands this autosmime has."""
    prefix = "autosmime" if ctx.find_root().params.get("home") is None else f"autosmime --home {home_dir(ctx)}"
    root = ctx.find_root().command
    have = set(root.list_commands(ctx)) if isinstance(root, click.Group) else set()
    steps = [("keys", f"{prefix} keys                     # which key is active, and the backup state"),
             ("publish", f"{prefix} publish                  # let others find your certificate"),
             ("send", f"{prefix} send --to SOMEONE --subject Hi < body.txt   # signed, encrypted when it can be"),
             ("status", f"{prefix} status                   # certificate expiry, backup health")]
    return [line for name, line in steps if name in have]


@click.command("export")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory to write into.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), help="File whose first line is the export password.")
@click.option("--legacy", is_flag=True,
              help="3DES and SHA-1, for old Windows, macOS and Android importers; adds one file per key for gpgsm 2.2.")
@click.option("--force", is_flag=True, help="Write into a folder that is not empty (files of the same name are replaced).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON object on standard output.")
@click.pass_context
def export_cmd(ctx: click.Context, out_dir: Path, password_file: Path | None, legacy: bool, force: bool,
               as_json: bool) -> None:
    """Export every key (current and old) as one PKCS#12, plus the certificates as PEM."""
    from autosmime._files import write_private
    from autosmime.vault.export import (
        GPGSM_MAX_PASSWORD,
        MIN_PASSWORD_CHARS,
        export_all,
        new_export_password,
        password_too_short,
    )
    from autosmime.vault.store import Vault

    if is_stdout(out_dir):  # several files: '-' cannot be standard output, and is no folder anyone meant
        raise UsageError("--out takes a folder to write the export into; '-' (standard output) cannot hold "
                         "several files")
    vault = Vault.open(home_dir(ctx), create=False)
    generated = password_file is None
    if generated:
        password = new_export_password().encode("ascii")
    else:
        password = _read_password(password_file, "Export password")
        if not password:
            raise UsageError(f"the password file {password_file} is empty; an export needs a password")
    # legacy PKCS#12 runs a slow KDF per key: worth a spinner
    with progress(f"exporting to {out_dir} ..."):
        files = export_all(vault, out_dir, password, legacy=legacy, force=force)
    if password_too_short(password):
        warn(f"the export password is shorter than {MIN_PASSWORD_CHARS} characters: whoever gets "
             "these files can guess it (leave out --password-file to have a strong one generated)")
    if legacy and len(password) > GPGSM_MAX_PASSWORD:
        warn(f"gpgsm 2.2 refuses legacy PKCS#12 passwords over {GPGSM_MAX_PASSWORD} bytes: "
             "this file will not import into gpgsm (other clients are not affected)")
    pw_file = None
    if generated:
        pw_file = out_dir / "export-password.txt"
        write_private(pw_file, password + b"\n")
    count = len(vault.entries())
    if as_json:
        emit_json({"keys": count, "files": [str(p) for p in files], "legacy": legacy,
                   "password_file": str(pw_file) if pw_file else None})
        return
    if pw_file is not None:
        say(f"the export password was generated and written to {pw_file}")
    say(f"exported {plural(count, 'key')} to {files[0]}")
    for path in files[1:]:
        say(f"  {path}")


def _key_json(e: VaultEntry) -> dict[str, Any]:
    return {
        "email": e.email,
        "status": e.effective_status(),
        "stored_status": e.status,
        "fingerprint": e.fingerprint,
        "subject": e.cert.subject.rfc4514_string(),
        "issuer": e.cert.issuer.rfc4514_string(),
        "not_before": e.cert.not_valid_before_utc.isoformat(),
        "not_after": e.cert.not_valid_after_utc.isoformat(),
        "added": e.added.isoformat(),
        "source": e.source,
    }


@click.group("keys", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def keys_cmd(ctx: click.Context, as_json: bool) -> None:
    """List every key held on this device and the backup state (or change which key is active)."""
    if ctx.invoked_subcommand is not None:
        return
    vault = agent_for(ctx).vault()
    entries = sorted(vault.entries(), key=lambda e: (e.email or "", e.cert.not_valid_before_utc), reverse=False)
    state = vault.state
    backup = {name: state.get(name) for name in _BACKUP_FIELDS}
    if as_json:
        emit_json({"keys": [_key_json(e) for e in entries], "backup": backup})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"keys in {vault.home}")
    # the address is what people scan for: never truncate it
    table.add_column("address", no_wrap=True, min_width=max([len(e.email or "-") for e in entries] + [7]))
    table.add_column("status", no_wrap=True)
    # nor the fingerprint, which `keys activate` takes (8 hex digits or more); "not before" makes room for it
    # on an 80-column terminal (`keys --json` has it)
    table.add_column("fingerprint", no_wrap=True, min_width=len(_short("0" * 16)))
    for column in ("not after", "source"):
        table.add_column(column)
    for e in entries:
        table.add_row(e.email or "-", e.effective_status(), _short(e.fingerprint),
                      f"{e.cert.not_valid_after_utc:%Y-%m-%d}", e.source)
    console = Console()
    if entries:
        console.print(table)
    else:
        console.print("no keys yet")
    console.print(_backup_line(backup))


def _change_status(ctx: click.Context, fp: str, status: str, as_json: bool) -> None:
    from autosmime.agent.keys import set_key_status
    from autosmime.cli.backup import backup_json, backup_lines

    with progress(f"making {fp[:16]} {status} and backing up ..."):
        change = set_key_status(agent_for(ctx), fp, status)
    if as_json:
        emit_json({"fingerprint": change.fingerprint, "email": change.address, "status": change.status,
                   "changed": change.changed, "retired": list(change.retired),
                   "no_active_left": change.no_active_left,
                   "backup": backup_json(change.backup) if change.backup else None})
    elif not change.changed:
        say(f"key {_short(change.fingerprint)} ({change.address or 'no address'}) is already {change.status}")
    else:
        say(f"key {_short(change.fingerprint)} ({change.address or 'no address'}) is now {change.status}")
        for other in change.retired:
            say(f"key {_short(other)} retired (it still decrypts old mail)")
    if change.no_active_left:
        warn(f"{change.address or 'this address'} has no active key left: you cannot sign, and others cannot "
             f"encrypt to a current key (activate one with `autosmime keys activate FINGERPRINT`, "
             "or get a new certificate)")
    if change.backup is not None and not as_json:
        for line in backup_lines(change.backup):
            say(line)


@keys_cmd.command("activate")
@click.argument("fingerprint")
@click.option("--json", "as_json", is_flag=True, help="Print the change as one JSON object on standard output.")
@click.pass_context
def keys_activate(ctx: click.Context, fingerprint: str, as_json: bool) -> None:
    """Sign and receive with this key (its address's other active key retires)."""
    _change_status(ctx, fingerprint, "active", as_json)


@keys_cmd.command("retire")
@click.argument("fingerprint")
@click.option("--json", "as_json", is_flag=True, help="Print the change as one JSON object on standard output.")
@click.pass_context
def keys_retire(ctx: click.Context, fingerprint: str, as_json: bool) -> None:
    """Stop using this key for new mail (it still decrypts old mail)."""
    _change_status(ctx, fingerprint, "retired", as_json)


_BACKUP_FIELDS = ("backup_pending", "backup_pending_reason", "backup_last_ok", "backup_seq_seen")


def _backup_line(backup: dict) -> str:
    if backup.get("backup_pending"):
        from autosmime.mailbox.text import server_text  # a state written before the text was cleaned

        return f"backup pending: {server_text(backup.get('backup_pending_reason') or '') or 'not yet uploaded'}"
    if backup.get("backup_last_ok"):
        return f"last backup: {backup['backup_last_ok']} (#{backup['backup_seq_seen']})"
    return "no backup made yet"


def register(group: click.Group) -> None:
    group.add_command(import_cmd)
    group.add_command(export_cmd)
    group.add_command(keys_cmd)
