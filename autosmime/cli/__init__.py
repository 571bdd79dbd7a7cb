"""The ``autosmime`` command: parse, call the library, print.

    $ autosmime sign --key key.pem --cert cert.pem < in.eml > out.eml

Every failure is an :class:`autosmime.errors.AutosmimeError`; it is printed as
one line on stderr with its exit code (1 failure, 2 usage, 3 no backup), and
nothing is written to stdout. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from autosmime.errors import AutosmimeError


class _Group(click.Group):
    def main(self, *args, **kwargs):  # type: ignore[override]
        debug = "--debug" in sys.argv[1:]
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
            _retry_queued_backup()
            return result
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("autosmime: aborted", err=True)
            sys.exit(1)
        except click.UsageError as e:
            path = e.ctx.command_path if e.ctx is not None else "autosmime"
            click.echo(f"autosmime: usage error: {e.format_message()} (see {path} --help)", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"autosmime: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code or 1)
        except AutosmimeError as e:
            if debug:
                raise
            click.echo(f"autosmime: error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("autosmime: interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # a bug: still one line unless --debug
            if debug:
                raise
            click.echo(f"autosmime: internal error: {type(e).__name__}: {e} (run with --debug)", err=True)
            sys.exit(1)


_last_ctx: dict = {}


def _retry_queued_backup() -> None:
    """A backup that could not reach the server is retried after the next successful command.

    Never fails the command that just succeeded: the retry's outcome is one
    status line on stderr, and a failed retry stays queued.
    """
    ctx = _last_ctx.get("ctx")
    if ctx is None or ctx.invoked_subcommand in (None, "backup", "restore"):
        return
    try:
        home = home_dir(ctx)
        from autosmime.vault.store import VAULT_FILE

        if not (home / VAULT_FILE).exists():
            return
        from autosmime.vault.backup import retry_pending
        from autosmime.vault.store import Vault

        status = retry_pending(Vault.open(home, create=False))
    except Exception as e:  # the queue survives; say why once
        logging.getLogger("autosmime").debug("backup retry failed", exc_info=True)
        status = f"queued key backup still pending ({type(e).__name__})"
    if status:
        click.echo(f"autosmime: {status}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="AUTOSMIME_HOME",
              help="This device's autosmime home (default: the platform's data directory).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="autosmime")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, debug: bool) -> None:
    """Automatic S/MIME for any IMAP/SMTP mailbox."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="autosmime: %(levelname)s: %(message)s")
    ctx.obj = {"home": home, "debug": debug}
    _last_ctx["ctx"] = ctx


def home_dir(ctx: click.Context) -> Path:
    """The device home chosen by --home / AUTOSMIME_HOME, else the platform default."""
    home = ctx.find_root().obj.get("home")
    if home is None:
        import platformdirs

        home = Path(platformdirs.user_data_dir("autosmime", appauthor=False))
    return Path(os.path.expanduser(str(home)))


def _register() -> None:
    from autosmime.cli import account, backup, ca, devstack, engine, enroll, keys

    for module in (engine, account, keys, backup, ca, enroll, devstack):
        module.register(cli)
    from autosmime.cli import directory, exchange  # commands import their libraries when run

    directory.register(cli)
    exchange.register(cli)


_register()


def main() -> None:
    cli.main(prog_name="autosmime")
