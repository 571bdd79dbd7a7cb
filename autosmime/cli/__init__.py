"""The ``autosmime`` command: parse, call the library, print.

    $ autosmime sign --key key.pem --cert cert.pem < in.eml > out.eml

Every failure is an :class:`autosmime.errors.AutosmimeError`; it is printed as
one line on stderr with its exit code (1 failure, 2 usage, 3 no backup, 4 the
account's recovery code is needed), and nothing is written to stdout.
``--debug`` shows the traceback instead.

The commands run flows through :mod:`autosmime.agent` (``agent_for``) or the
message engine; each command module imports what it needs when it runs, so
``autosmime --help`` and the engine commands load neither the vault, the
mailbox nor the agent.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from autosmime.errors import AutosmimeError

if TYPE_CHECKING:
    from autosmime.agent.context import Agent

__all__ = ["agent_for", "cli", "home_dir", "main"]


class _Group(click.Group):
    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,  # type: ignore[override]
             **kwargs: Any) -> Any:
        from autosmime.cli._options import given_before_command, normalise_args

        args = normalise_args(self, sys.argv[1:] if args is None else args)  # global options first, ~ expanded
        debug = given_before_command(self, args, "--debug")
        try:
            rv = super().main(args, prog_name, standalone_mode=False, **kwargs)
            # ctx.exit(n) without standalone mode comes back as the return value n, not as Exit: exit with it
            # (our commands return None), or `monitor`'s exit 1 for a certificate never held would be exit 0
            if isinstance(rv, int) and not isinstance(rv, bool) and rv:
                sys.exit(rv)
            return rv
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort as e:
            if isinstance(e.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort: 130 as documented
                click.echo("autosmime: interrupted", err=True)
                sys.exit(130)
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


def home_dir(ctx: click.Context) -> Path:
    """The device home chosen by --home / AUTOSMIME_HOME, else the platform default."""
    home = ctx.find_root().obj.get("home")
    if home is None:
        import platformdirs

        home = Path(platformdirs.user_data_dir("autosmime", appauthor=False))
    return Path(os.path.expanduser(str(home)))


def _show_new_code(code: str) -> bool:
    """Show a just-created recovery code once, if a person is at the terminal."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    click.echo("autosmime: your recovery code (shown once; write it down and keep it offline, "
               "it opens every key backup):", err=True)
    click.echo(f"autosmime:     {code}", err=True)
    return True


def agent_for(ctx: click.Context, **options: Any) -> Agent:
    """The agent for this device's home, showing new recovery codes on the terminal."""
    from autosmime.agent.context import Agent

    return Agent(home_dir(ctx), present_code=_show_new_code, **options)


def _register() -> None:
    from autosmime.cli import account, backup, ca, devstack, engine, enroll, join, keys

    for module in (engine, account, keys, backup, join, ca, enroll, devstack):
        module.register(cli)
    from autosmime.cli import demo, directory, exchange, mail, setup, watch  # commands import their libraries when run

    directory.register(cli)
    exchange.register(cli)
    setup.register(cli)
    mail.register(cli)
    watch.register(cli)
    demo.register(cli)


_register()


def main() -> None:
    cli.main(prog_name="autosmime")
