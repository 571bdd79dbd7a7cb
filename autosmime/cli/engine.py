"""sign, verify, encrypt, decrypt and read: the message engine on the command line.

    $ autosmime sign --key key.pem --cert cert.pem < in.eml > signed.eml
    $ autosmime verify --trust ca.pem < signed.eml > inner.eml

Without key options, the commands use the keys in this device's vault.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from autosmime._files import write_private
from autosmime.cli._options import OutFile, is_stdout
from autosmime.cli._output import binary_stream, say, warn
from autosmime.errors import KeyFileError, MalformedMessage, NoKey, UsageError

if TYPE_CHECKING:
    from autosmime.pki.keys import KeyPair


# autosmime.pki.keys (and with it cryptography's X.509 and serialization) is imported when a
# command runs, not when the CLI starts: `autosmime --help` needs none of it.
def read_file(path: Path) -> bytes:
    from autosmime.pki import keys

    return keys.read_file(path)


def read_first_line(path: Path) -> bytes:
    from autosmime.pki import keys

    return keys.read_first_line(path)


def load_certificates(data: bytes) -> list[Any]:
    from autosmime.pki import keys

    return keys.load_certificates(data)


def load_key_and_cert(key: Path, cert: Path, chain: Path | None = None) -> KeyPair:
    from autosmime.pki import keys

    return keys.load_key_and_cert(key, cert, chain)

_check_revocation = click.option(
    "--check-revocation", is_flag=True,
    help="Check the signer's certificate against its CA's CRL (fetched over HTTP; cached in the home when this "
         "device is set up). Off by default: the file commands stay offline.")
_in = click.option("--in", "in_file", type=click.Path(dir_okay=False, path_type=Path),
                   help="Read the message from FILE instead of standard input.")
_out = click.option("--out", "out_file", type=OutFile(),
                    help="Write the result to FILE instead of standard output ('-': standard output).")


def _read_input(in_file: Path | None) -> bytes:
    if in_file is not None:
        return read_file(in_file)
    stream = binary_stream("stdin")
    if stream.isatty():
        raise UsageError("no input: pipe a message in or use --in FILE")
    return stream.read()


@contextlib.contextmanager
def _open_input(in_file: Path | None) -> Iterator[BinaryIO]:
    """:func:`_read_input` as a stream, for a command that reads as it goes (a file is closed after)."""
    if in_file is None:
        stream = binary_stream("stdin")
        if stream.isatty():
            raise UsageError("no input: pipe a message in or use --in FILE")
        yield stream
        return
    try:
        f = open(in_file, "rb")
    except OSError as e:
        raise KeyFileError(f"cannot read {in_file}: {e.strerror}") from None
    with f:
        yield f


def _write_output(data: bytes | Iterable[bytes], out_file: Path | None) -> None:
    """Only after success, and atomically for files: a failure leaves nothing behind."""
    if out_file is None or is_stdout(out_file):
        out = binary_stream("stdout")
        out.writelines((data,) if isinstance(data, bytes) else data)
        out.flush()
        return
    try:
        write_private(out_file, data)  # 0600: it may be a decrypted message
    except OSError as e:
        raise UsageError(f"cannot write {out_file}: {e.strerror}") from None


def _password(password_file: Path | None) -> bytes | None:
    if password_file is None:
        return None
    return read_first_line(password_file)


def _p12_pairs(p12: Path, password_file: Path | None) -> list[KeyPair]:
    from autosmime.pki.pkcs12 import parse_pfx

    data = read_file(p12)
    password = _password(password_file)
    return parse_pfx(data, password, require_protected=False)


def _vault(ctx: click.Context):
    """This device's vault, or None when it has none (one that exists but won't open is an error)."""
    from autosmime._files import VAULT_FILE
    from autosmime.cli import home_dir

    home = home_dir(ctx)
    if not (home / VAULT_FILE).exists():
        return None
    from autosmime.vault.store import Vault

    return Vault.open(home, create=False)


def _own_keys(ctx, key, cert, chain, p12, password_file, *, purpose: str) -> list[KeyPair]:
    if p12 and (key or cert):
        raise UsageError("use either --p12 or --key/--cert, not both")
    if bool(key) != bool(cert):
        raise UsageError("--key and --cert go together")
    if p12:
        return _p12_pairs(p12, password_file)
    if key:
        return [load_key_and_cert(key, cert, chain)]
    vault = _vault(ctx)
    if vault is None:
        raise UsageError(f"no key given (--key/--cert or --p12) and no vault on this device to {purpose} with")
    if purpose == "sign":
        return [vault.signing_pair()]
    from autosmime.pki.keys import KeyPair

    pairs = [KeyPair(k, c) for k, c in vault.decryption_keys()]
    if not pairs:
        raise NoKey("the vault holds no keys")
    return pairs


def _parse_at(value: str | None) -> _dt.datetime | None:
    if value is None:
        return None
    try:
        at = _dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--at: not an ISO 8601 time: {value!r} (e.g. 2024-01-31T00:00:00Z)") from None
    return at if at.tzinfo else at.replace(tzinfo=_dt.UTC)


_key_opts = [
    click.option("--key", type=click.Path(dir_okay=False, path_type=Path), help="Private key (PEM/DER)."),
    click.option("--cert", type=click.Path(dir_okay=False, path_type=Path), help="Certificate of the key."),
    click.option("--p12", type=click.Path(dir_okay=False, path_type=Path), help="PKCS#12 file with key and certificate."),
    click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
                 help="File whose first line is the PKCS#12 password."),
]


def _with(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f
    return deco


@click.command()
@_with(_key_opts)
@click.option("--chain", type=click.Path(dir_okay=False, path_type=Path), help="Intermediate CA certificates to include.")
@click.option("--opaque", is_flag=True, help="application/pkcs7-mime instead of detached multipart/signed.")
@click.option("--pss", is_flag=True, help="RSA-PSS signature (modern) instead of PKCS#1 v1.5.")
@_in
@_out
@click.pass_context
def sign(ctx, key, cert, p12, password_file, chain, opaque, pss, in_file, out_file):
    """Sign a message (stdin -> stdout)."""
    from autosmime.smime import sign as do_sign

    pair = _own_keys(ctx, key, cert, chain, p12, password_file, purpose="sign")[0]
    data = _read_input(in_file)
    _write_output(do_sign(data, pair.key, pair.cert, pair.chain, opaque=opaque, pss=pss), out_file)
    _warn_from_mismatch(data, pair.cert)


def _warn_from_mismatch(data: bytes, cert: Any) -> None:
    """Recipients' clients flag a signature whose certificate does not name the From address: say so now."""
    from autosmime.pki.certs import cert_addresses
    from autosmime.smime import mime
    from autosmime.smime.verify import from_address

    try:
        sender = from_address(mime.Message.parse(data))
    except MalformedMessage:
        return
    names = cert_addresses(cert)
    if sender is None:
        warn(f"the message has no single From address; recipients will see a signature by "
             f"{', '.join(names) or 'a certificate naming no address'} they cannot match to a sender")
    elif sender not in names:
        warn(f"From is {sender} but the certificate is for {', '.join(names) or 'no address'}: "
             "recipients' mail clients will show the signature as not matching the sender")


@click.command()
@click.option("--trust", "trust", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Trusted root certificate(s); repeatable.")
@click.option("--at", "at", metavar="TIME",
              help="Validate as of this ISO 8601 time (old mail); the Date header is then not held to the signing time.")
@click.option("--signer-cert-out", type=OutFile(),
              help="Write the signer's certificate (PEM) to FILE ('-': standard output): the signer From names.")
@click.option("--allow-from-mismatch", is_flag=True, help="Accept a signer whose certificate does not name From.")
@_check_revocation
@click.option("--json", "as_json", is_flag=True,
              help="Print the verdict, signer and content as one JSON object (docs/cli.md); with --out the "
                   "message goes to FILE and the JSON's content is null.")
@_in
@_out
@click.pass_context
def verify(ctx, trust, at, signer_cert_out, allow_from_mismatch, check_revocation, as_json, in_file, out_file):
    """Verify a signed message; print the inner message (exit 1 unless the signature is good)."""
    from autosmime.smime import verify as do_verify

    if not trust:
        raise UsageError("no trust roots: give --trust CA.pem")
    roots = [c for path in trust for c in load_certificates(read_file(path))]
    when = _parse_at(at)
    data = _read_input(in_file)
    result = do_verify(data, roots, when, require_from_match=not allow_from_mismatch, check_date=when is None,
                       revocation=_revocation(ctx) if check_revocation else None)
    pem = None
    if signer_cert_out and result.signer_cert is not None:
        from cryptography.hazmat.primitives import serialization

        pem = result.signer_cert.public_bytes(serialization.Encoding.PEM)
        if not (as_json and is_stdout(signer_cert_out)):  # with --json, stdout holds the one JSON object only
            _write_output(pem, signer_cert_out)
    _learn(ctx, result)
    if as_json:
        _verify_json(result, out_file, pem if is_stdout(signer_cert_out) else None)
        return
    _write_output(result.message, out_file)
    when_text = result.signing_time.isoformat() if result.signing_time else "no signing time"
    note = f"; {result.revocation_note}" if result.revocation_note else ""
    say(f"good signature from {result.signer_address or 'unknown address'} ({when_text}){note}")


def _revocation(ctx: click.Context) -> Any:
    """--check-revocation: the agent's CRL checker, its cache in the home when this device is set up."""
    from autosmime.agent.inbox import revocation_checker

    home = home_dir_if_set_up(ctx)
    return revocation_checker(home)


def home_dir_if_set_up(ctx: click.Context) -> Path | None:
    """The device home when it holds a vault or an account; None for someone who only checks files."""
    from autosmime._files import VAULT_FILE
    from autosmime.cli import home_dir
    from autosmime.mailbox.account import ACCOUNT_FILE

    home = home_dir(ctx)
    return home if (home / VAULT_FILE).exists() or (home / ACCOUNT_FILE).exists() else None


def _learn(ctx: click.Context, result: Any) -> None:
    """Good signers' certificates join this device's contacts, so a reply can be encrypted to them.

    Only on a device that is set up (a vault or an account in its home): the file commands
    also serve people who only want a verdict, and they get no home created behind their back.
    """
    if home_dir_if_set_up(ctx) is None:
        return
    from autosmime.agent.lookup import harvest_verified
    from autosmime.cli import agent_for

    _warn_held_back(harvest_verified(agent_for(ctx), result))


def _warn_held_back(learned: Iterable[Any]) -> None:
    """A signer's certificate other than the one in the contacts is kept but not used: say so."""
    for h in learned:
        if h.outcome == "changed":
            warn(f"{h.address} signed with a certificate other than the one in your contacts "
                 f"(sha256 {h.sha256[:16]}...); it is held back, not used, until the directory vouches for it: "
                 f"`autosmime lookup {h.address}`")


def _verify_json(result: Any, out_file: Path | None, signer_pem: bytes | None = None) -> None:
    """verify --json: one object on stdout; the message in it unless --out took it, the signer's
    certificate in it as ``signer_cert_pem`` when asked for on stdout (``--signer-cert-out -``)."""
    import json

    from autosmime.pki.certs import fingerprint

    content = encoding = None
    if out_file is not None and not is_stdout(out_file):
        _write_output(result.message, out_file)
    else:
        try:
            content, encoding = result.message.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            import base64

            content, encoding = base64.b64encode(result.message).decode("ascii"), "base64"
    cert = result.signer_cert
    doc = {"verdict": result.verdict, "signer": result.signer_address,
           "signer_sha256": fingerprint(cert) if cert is not None else None,
           "from": result.from_address, "from_matches": result.from_matches,
           "signing_time": result.signing_time.isoformat() if result.signing_time else None,
           "notes": list(result.signers[0].notes) if result.signers else [],
           "content": content, "content_encoding": encoding}
    if signer_pem is not None:
        doc["signer_cert_pem"] = signer_pem.decode("ascii")
    _write_output((json.dumps(doc, indent=2) + "\n").encode(), None)


@click.command()
@click.option("--to", "to", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Recipient certificate; repeatable.")
@click.option("--self", "self_cert", type=click.Path(dir_okay=False, path_type=Path),
              help="Your own certificate (default: the vault's), added so Sent stays readable.")
@click.option("--modern", is_flag=True, help="AES-256-GCM AuthEnvelopedData with RSA-OAEP.")
@click.option("--sign", "sign_first", is_flag=True,
              help="Sign first, in the same pass (your key: --key/--cert, --p12 or the vault's).")
@_with(_key_opts)
@click.option("--chain", type=click.Path(dir_okay=False, path_type=Path),
              help="With --sign: intermediate CA certificates to include.")
@_in
@_out
@click.pass_context
def encrypt(ctx, to, self_cert, modern, sign_first, key, cert, p12, password_file, chain, in_file, out_file):
    """Encrypt a message to its recipients and to yourself (signed first with --sign)."""
    from autosmime.smime import encrypt as do_encrypt
    from autosmime.smime import sign_and_encrypt

    if not to:
        raise UsageError("no recipient: give --to CERT.pem")
    if not sign_first and (key or cert or p12 or password_file or chain):
        raise UsageError("--key, --cert, --p12, --password-file and --chain are for --sign")
    recipients = [load_certificates(read_file(p))[0] for p in to]
    pair = _own_keys(ctx, key, cert, chain, p12, password_file, purpose="sign")[0] if sign_first else None
    sender = None
    if self_cert:
        sender = load_certificates(read_file(self_cert))[0]
    else:
        vault = _vault(ctx)
        if vault is not None:
            try:
                sender = vault.encryption_pair().cert
            except NoKey:
                sender = None
    if sender is None:
        warn("your own copy is left out: you will not be able to decrypt this message yourself "
             "(give --self YOUR-CERT.pem, or keep an active key in this device's vault)")
    data = _read_input(in_file)
    profile = "modern" if modern else "interop"
    if pair is not None:
        out = sign_and_encrypt(data, pair.key, pair.cert, recipients, sender_cert=sender, chain=pair.chain,
                               profile=profile)
    else:
        out = do_encrypt(data, recipients, sender_cert=sender, profile=profile)
    _write_output(out, out_file)


@click.command()
@_with(_key_opts)
@_in
@_out
@click.pass_context
def decrypt(ctx, key, cert, p12, password_file, in_file, out_file):
    """Decrypt a message with your key(s)."""
    from autosmime.smime.decrypt import decrypt_stream

    pairs = _own_keys(ctx, key, cert, None, p12, password_file, purpose="decrypt")
    with _open_input(in_file) as source:  # read as it is decoded: a large message is never held whole
        report, message = decrypt_stream(source, pairs)
        _write_output(message, out_file)
    if report.weak:
        warn(f"weak encryption ({report.content_algorithm})")


@click.command()
@_with(_key_opts)
@click.option("--trust", "trust", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Trusted root certificate(s); repeatable.")
@click.option("--at", "at", metavar="TIME",
              help="Validate as of this ISO 8601 time (old mail); the Date header is then not held to the signing time.")
@click.option("--json", "as_json", is_flag=True,
              help="Print every layer's record and the content as one JSON document (docs/engine.md).")
@_check_revocation
@click.option("--folder", help="With UID: the mailbox folder (default INBOX).")
@click.option("--raw", is_flag=True, help="With UID: print the opened message itself (MIME), not the text view.")
@_in
@_out
@click.argument("uid", required=False, type=click.IntRange(min=1))
@click.pass_context
def read(ctx, key, cert, p12, password_file, trust, at, as_json, check_revocation, folder, raw, in_file, out_file,
         uid):
    """Open every layer: print the content, and a summary on stderr.

    With UID, the message is fetched from the mailbox (INBOX, or --folder), read with every
    key in the vault and shown as text (headers, text, attachments; --raw or --out: the message
    itself); without, it is read from standard input or --in and the opened message printed.
    Exit 0 when the signature nearest the content is good or there is no S/MIME
    signature; 1 when it is not good or the content could not be decrypted. With UID the
    signer's revocation is always checked (the CRLs cached in the home); from a file only
    with --check-revocation.
    """
    import json

    from autosmime.smime import read as do_read

    if uid is None and folder is not None:
        raise UsageError("--folder goes with a UID (autosmime read UID --folder F)")
    if uid is None and raw:
        raise UsageError("--raw goes with a UID (without one, read prints the message itself)")
    if uid is not None and in_file is not None:
        raise UsageError("give either a UID or --in, not both")
    roots = [c for path in trust for c in load_certificates(read_file(path))]
    when = _parse_at(at)
    extra: dict = {}
    if uid is not None:  # from the mailbox: agent.inbox (every vault key, the vault's roots, harvesting)
        from autosmime.agent.inbox import read_uid
        from autosmime.cli import agent_for

        given = _own_keys(ctx, key, cert, None, p12, password_file, purpose="decrypt") if key or p12 else None
        opened = read_uid(agent_for(ctx), uid, folder or "INBOX", keys=given, extra_roots=roots, at=when)
        result, extra = opened.result, {"uid": opened.uid, "folder": opened.folder}
        _warn_held_back(opened.harvested)
    else:
        try:
            pairs = _own_keys(ctx, key, cert, None, p12, password_file, purpose="decrypt")
        except (UsageError, NoKey):
            if key or cert or p12:
                raise
            pairs = []  # no key here: plain and signed mail still read; an encrypted layer says it cannot be opened
        data = _read_input(in_file)
        result = do_read(data, keys=pairs, trust_roots=roots, at=when, check_date=when is None,
                         revocation=_revocation(ctx) if check_revocation else None)
        _learn(ctx, result)  # read UID learns inside agent.inbox
    if as_json:
        _write_output((json.dumps({**result.to_json(), **extra}, indent=2) + "\n").encode(), out_file)
    elif result.message is not None and uid is not None and not raw and out_file is None:
        from autosmime.cli._view import text_view

        _write_output((text_view(result.message) + "\n").encode(), None)
    elif result.message is not None:
        _write_output(result.message, out_file)
    say(result.summary)
    if result.exit_code:
        # Not ctx.exit(): the group runs click with standalone_mode=False, which turns that into a return value.
        raise SystemExit(result.exit_code)


def register(group: click.Group) -> None:
    for command in (sign, verify, encrypt, decrypt, read):
        group.add_command(command)
