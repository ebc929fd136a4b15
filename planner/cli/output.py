"""Shared rendering helpers for the CLI: one --format option, table/json/csv writers."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from planner.errors import InputError

MAX_INPUT_FILE = 512 * 1024 * 1024


def format_option(*choices: str, default: str | None = None) -> Callable[[Any], Any]:
    opt: Callable[[Any], Any] = click.option(
        "--format", "fmt", type=click.Choice(list(choices)), default=default or choices[0],
        show_default=True, help="Output format.",
    )
    return opt


cpu_map_option = click.option(
    "--cpu-map", "cpu_map", metavar="DIR", default=None,
    help="Load CPU models from this libvirt cpu_map directory (e.g. a host's "
         "/usr/share/libvirt/cpu_map, libvirt 7.0 to 11.x) instead of migplan's catalogs; "
         "9.0 or 11.3 selects a shipped one.  Default: libvirt 9.0's for CPU files, and "
         "for a snapshot the one of its hosts' libvirt (docs/cpu.md).",
)


def read_input(path: str) -> bytes:
    """Read a user-named file with a clear error and a size bound."""
    p = Path(path)
    if path == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_FILE + 1)
    else:
        if not p.exists():
            raise InputError(f"{path}: no such file")
        if p.is_dir():
            raise InputError(f"{path}: is a directory, not a file")
        try:
            size = p.stat().st_size
            if size > MAX_INPUT_FILE:
                raise InputError(f"{path}: {size} bytes is larger than the {MAX_INPUT_FILE}-byte limit")
            data = p.read_bytes()
        except PermissionError:
            raise InputError(f"{path}: permission denied") from None
    if len(data) > MAX_INPUT_FILE:
        raise InputError(f"{path}: larger than the {MAX_INPUT_FILE}-byte limit")
    return data


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = io.StringIO()
    for n, row in enumerate(cells):
        out.write("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    return out.getvalue()


def render_csv(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(headers)
    for r in rows:
        w.writerow(["" if c is None else c for c in r])
    return out.getvalue()


def render_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def emit(text: str) -> None:
    click.echo(text, nl=False)


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
