"""Shared rendering helpers for the CLI: one --format option, table/json/csv writers."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import click

from planner.adapters.files import read_user_file
from planner.errors import InputError
from planner.review.text import printable, printable_lines

MAX_INPUT_FILE = 512 * 1024 * 1024


def format_option(*choices: str, default: str | None = None) -> Callable[[Any], Any]:
    opt: Callable[[Any], Any] = click.option(
        "--format", "fmt", type=click.Choice(list(choices)), default=default or choices[0],
        show_default=True, help="Output format.",
    )
    return opt


class FiniteFloat(click.ParamType):  # type: ignore[type-arg]
    """A number that is a number: nan and inf are refused (nan passes every comparison
    a range check makes, so --cpu-ratio nan used to approve every move)."""

    name = "float"

    def __init__(self, min: float | None = None) -> None:  # noqa: A002 - click's spelling
        self.min = min

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> float:
        try:
            f = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(f):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.min is not None and f < self.min:
            self.fail(f"{value!r} is smaller than {self.min:g}", param, ctx)
        return f


cpu_map_option = click.option(
    "--cpu-map", "cpu_map", metavar="DIR", default=None,
    help="Load CPU models from this libvirt cpu_map directory (e.g. a host's "
         "/usr/share/libvirt/cpu_map, libvirt 7.0 to 11.x) instead of migplan's catalogs; "
         "9.0 or 11.3 selects a shipped one.  Default: libvirt 9.0's for CPU files, and "
         "for a snapshot the one of its hosts' libvirt (docs/cpu.md).",
)


def read_input(path: str) -> bytes:
    """Read a user-named file (``-``: stdin) with a clear error, a size bound, and for
    pipes a bound on silence (``planner.adapters.files``)."""
    return read_user_file(path, MAX_INPUT_FILE)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns; every cell on one line with its control characters escaped."""
    cells = [[printable(str(h)) for h in headers]] + \
        [["" if c is None else printable(str(c)) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = io.StringIO()
    for n, row in enumerate(cells):
        out.write("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    return out.getvalue()


#: A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
#: (OWASP "CSV injection"): such text cells get a leading apostrophe.
CSV_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(c: Any) -> Any:
    if c is None:
        return ""
    if isinstance(c, str) and c.startswith(CSV_FORMULA_LEADS):
        return "'" + c
    return c


def render_csv(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """RFC 4180 CSV by the csv module; text cells a spreadsheet would run are neutralised."""
    # The csv module quotes a field holding a character of its line terminator: with
    # "\r\n" a lone CR in a name is quoted too (with "\n" it would be written bare and
    # end the row for every reader); each row then ends in "\n", like the rest of migplan.
    out = io.StringIO()
    row = io.StringIO()
    w = csv.writer(row, lineterminator="\r\n")
    for r in [headers, *rows]:
        w.writerow([csv_cell(c) for c in r])
        out.write(row.getvalue()[:-2] + "\n")
        row.seek(0)
        row.truncate()
    return out.getvalue()


def render_json(obj: Any) -> str:
    """Standard JSON (no NaN or Infinity, which strict parsers refuse), ASCII only."""
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def unwind_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so half-written output is removed on the way out."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)


def emit(text: str) -> None:
    """Write output: line breaks kept, every other control character escaped (a name
    in the output can neither move the cursor nor recolour the terminal)."""
    click.echo(printable_lines(text), nl=False)


def read_text(path: str) -> str:
    """A user-named UTF-8 text file (``read_input``'s bounds), or a clear error."""
    data = read_input(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None


def libvirt_auth_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--libvirt-user and --libvirt-password-file: SASL as kolla-/xavs-ansible deploy it."""
    f = click.option("--libvirt-password-file", metavar="F", default=None,
                     help="SASL password for libvirt: kolla-ansible's passwords.yml "
                          "(libvirt_sasl_password) or a file holding the password; else "
                          "$MIGPLAN_LIBVIRT_PASSWORD.  Never stored or printed.")(f)
    f = click.option("--libvirt-user", metavar="USER", default=None,
                     help="SASL user for libvirt (default $MIGPLAN_LIBVIRT_USER or nova, "
                          "kolla's).")(f)
    return f


def libvirt_credentials(user: str | None, password_file: str | None) -> Any:
    """The ``LibvirtCredentials`` the options (or ``MIGPLAN_LIBVIRT_*``) give, or None."""
    import os

    from planner.collect.credentials import credentials

    return credentials(read_text(password_file) if password_file else None,
                       password_file or "", user, os.environ)
