"""``autosmime demo``: the whole system on this machine, step by step, each step verified.

    $ autosmime demo            # exit 0: every step verified, everything stopped
    $ autosmime demo --keep     # leaves the stack and the homes running, says where and how to stop them

The story is :func:`autosmime.agent.demo.run_demo`; this module prints it: one
numbered line per step on stdout (with a spinner and colour on a terminal, plain
lines otherwise), the failure as the usual one ``autosmime: error:`` line on
stderr (exit 1, naming the step). SIGTERM stops the demo as Ctrl-C does:
everything it started is stopped before it exits.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from autosmime.agent.demo import DemoOutcome, StepResult


def register(group: click.Group) -> None:
    group.add_command(demo)


class _Story:
    """The demo's lines: rich (a spinner while a step runs, a green tick or a red cross) on a terminal, plain
    ``N. title: ok (s): detail`` lines otherwise."""

    def __init__(self) -> None:
        self.console: Any = None
        self.status: Any = None     # the spinner; lines printed through the same console go above it
        if sys.stdout.isatty():
            from rich.console import Console

            self.console = Console(highlight=False)
            self.status = self.console.status("starting the devstack ...")
        self.title = ""
        self.was_kept = False

    def spin(self, text: str) -> None:
        if self.status is not None:  # one line: a wrapped spinner line is redrawn badly
            from rich.markup import escape

            width = max(20, self.console.width - 4)
            self.status.update(escape(text if len(text) <= width else text[:width - 3] + "..."))

    def line(self, plain: str, styled: str | None = None) -> None:
        if self.console is not None:
            self.console.print(styled if styled is not None else plain, soft_wrap=True)
        else:
            click.echo(plain)

    def stack(self, path: object) -> None:
        self.line(f"autosmime demo: starting the devstack in {path} (Dovecot, Postfix with DKIM, the CA, "
                  "the key directory, all on 127.0.0.1)")
        if self.status is not None:
            self.status.start()

    def stack_up(self, seconds: float) -> None:
        self.line(f"autosmime demo: devstack up ({seconds:.1f} s)")

    def start(self, number: int, title: str) -> None:
        from autosmime.agent.demo import STEPS

        self.title = f"[{number}/{len(STEPS)}]"
        self.spin(f"{self.title} {title} ...")

    def progress(self, text: str) -> None:
        self.spin(f"{self.title} {text} ...")

    def step(self, result: StepResult) -> None:
        from rich.markup import escape

        state = "ok" if result.ok else "FAILED"
        plain = f"{result.number}. {result.title}: {state} ({result.seconds:.1f} s): {result.detail}"
        mark = "[green]✓[/green]" if result.ok else "[red]✗[/red]"
        styled = (f"{mark} [bold]{result.number}. {escape(result.title)}[/bold] [dim]({result.seconds:.1f} s)"
                  f"[/dim]\n    {escape(result.detail)}")
        self.line(plain, styled)

    def cleanup(self) -> None:
        self.spin("stopping everything the demo started ...")

    def kept(self, outcome: DemoOutcome) -> None:
        from autosmime.agent.demo import describe_kept

        self.was_kept = True
        self.close()
        for text in describe_kept(outcome):
            self.line(f"autosmime demo: {text}")

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: the demo's clean-up runs, then the usual exit 143


@click.command("demo")
@click.option("--keep", is_flag=True,
              help="Leave the stack and the homes running afterwards (it says where, and how to stop them).")
def demo(keep: bool) -> None:
    """Run the embedded stack and show autosmime's whole story on it, each step verified: alice and bob set up;
    an encrypted mail read; alice's device wiped and restored from her mailbox backup; her export opened by
    openssl. Exit 0 only if every step was verified; everything it started is stopped unless --keep."""
    from autosmime.agent.demo import STEPS, Events, run_demo

    previous = signal.signal(signal.SIGTERM, _terminate)
    story = _Story()
    try:
        outcome = run_demo(Events(on_stack=story.stack, on_stack_up=story.stack_up, on_start=story.start,
                                  on_progress=story.progress, on_step=story.step, on_cleanup=story.cleanup,
                                  on_kept=story.kept), keep=keep)
    except KeyboardInterrupt:  # Ctrl-C: said here, since the clean-up it triggered is done by now
        story.close()
        click.echo("autosmime: interrupted; " + ("the demo is kept as it was (above)" if story.was_kept else
                                                 "everything the demo started is stopped"), err=True)
        sys.exit(130)
    finally:
        story.close()
        signal.signal(signal.SIGTERM, previous)
    after = "the stack and homes are kept (above)" if outcome.kept else "everything it started is stopped"
    story.line(f"autosmime demo: all {len(STEPS)} steps verified in {outcome.seconds:.1f} s; {after}",
               f"[green]autosmime demo: all {len(STEPS)} steps verified[/green] in {outcome.seconds:.1f} s; {after}")
