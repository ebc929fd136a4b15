"""migplan's command line: parse arguments, make one library call, render.

Subcommands live in their own modules and are imported only when used, so
``migplan cpu-baseline`` does not pay for pandas or networkx.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from planner import __version__
from planner.errors import MigplanError
from planner.review.text import printable_lines

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "collect": "planner.cli.collect:collect_cmd",
    "cpu-baseline": "planner.cli.cpu:cpu_baseline",
    "cpu-compare": "planner.cli.cpu:cpu_compare",
    "check": "planner.cli.recommend:check_cmd",
    "cpu-models": "planner.cli.cpu:cpu_models",
    "demo": "planner.cli.demo:demo",
    "lab": "planner.cli.lab:lab",
    "migrate": "planner.cli.migrate:migrate_cmd",
    "drain": "planner.cli.drain:drain_cmd",
    "recommend": "planner.cli.recommend:recommend_cmd",
    "report": "planner.cli.report_html:report_cmd",
}

EXIT_CODES_HELP = """\b
Exit codes: 0 ok · 1 error · 2 usage · 3 infeasible/incompatible/refused, or
guests stranded (recommend) · 4 migration failed (the source confirmed the guest
still runs there) · 5 partial (some hosts not collected) · 6 no safe configuration
(recommend) · 7 unknown where the guest is: check before acting (migrate, drain) ·
8 guest lost (migrate, drain) · 130 interrupted.  See docs/exit-codes.md."""


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        mod_name, attr = target.split(":")
        cmd: click.Command = getattr(importlib.import_module(mod_name), attr)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="migplan")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """migplan: live-migration compatibility planner for libvirt/KVM clusters.

    \b
    Example:
      virsh capabilities >> all-hosts-caps.xml   # on every host
      migplan cpu-baseline all-hosts-caps.xml
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("MIGPLAN_DEBUG") == "1"


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place errors become messages and exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    try:
        rv: Any = cli.main(args=args, prog_name="migplan", standalone_mode=False)
    except MigplanError as err:
        if debug:
            raise
        click.echo(printable_lines(f"Error: {err}"), err=True)
        sys.exit(err.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        # click turns Ctrl-C (and SIGTERM, for the commands that unwind on it) into Abort
        click.echo("Error: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        if debug:
            raise
        msg = err.format_message()
        if isinstance(err, click.UsageError) and err.ctx is not None:
            click.echo(err.ctx.get_usage(), err=True)
        click.echo(printable_lines(f"Error: {msg}"), err=True)
        sys.exit(2 if isinstance(err, click.UsageError) else err.exit_code)
    except Exception as err:  # an unexpected failure is still reported, not dumped
        if debug:
            raise
        click.echo(printable_lines(f"Error: internal error: {type(err).__name__}: {err} "
                                   "(run with --debug for the traceback)"), err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
