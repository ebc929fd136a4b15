"""`migplan lab up|status|down`: real libvirt hosts on this machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from planner.cli.output import emit, format_option, render_json, render_table
from planner.lab import STATE_DIR_ENV, HostStatus, Lab, default_state_dir


def _progress(msg: str) -> None:
    click.echo(msg, err=True)


def _render(statuses: list[HostStatus], fmt: str) -> str:
    if fmt == "json":
        return render_json([s.to_dict() for s in statuses])
    rows = []
    for s in statuses:
        guests = ", ".join(f"{g.name} ({g.state}{'' if g.persistent else ', transient'})"
                           for g in s.guests)
        rows.append([s.name, s.uri, s.pid or "-", "running" if s.running else "stopped",
                     guests or "-"])
    return render_table(["host", "uri", "pid", "state", "guests"], rows)


STATE_DIR_HELP = (f"Where the lab keeps everything (default ${STATE_DIR_ENV} or "
                  f"{default_state_dir()}).")


def state_dir_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """--state-dir on the group and on each command (`lab up --state-dir D` reads naturally)."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.ensure_object(dict)
            ctx.obj["state_dir"] = value

    return click.option("--state-dir", type=click.Path(file_okay=False), default=None,
                        expose_value=False, callback=remember, help=STATE_DIR_HELP)(f)


@click.group("lab")
@state_dir_option
@click.pass_context
def lab(ctx: click.Context) -> None:
    """Run a lab of real libvirt hosts on this machine (needs root).

    Each host is a libvirtd in its own mount namespace listening on
    qemu+tcp://127.0.0.N/system, with small diskless QEMU guests.

    \b
    Example:
      sudo migplan lab up --hosts 3
      migplan lab status
      sudo migplan lab down
    """
    ctx.ensure_object(dict)
    ctx.obj.setdefault("state_dir", None)


@lab.command("up")
@click.option("--hosts", type=click.IntRange(1, 64), default=None,
              help="Number of hosts (default 3, or the running lab's size).")
@click.option("--guests", type=click.IntRange(0, 16), default=None,
              help="Guests started on each new host (default 2).")
@click.option("--first-ip", type=click.IntRange(1, 254), default=None,
              help="Last octet of the first host's address, 127.0.0.N (default 2).")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto",
              show_default=True, help="Guests' accelerator: auto is KVM when /dev/kvm works.")
@format_option("table", "json")
@state_dir_option
@click.pass_context
def up(ctx: click.Context, hosts: int | None, guests: int | None, first_ip: int | None,
       accel: str, fmt: str) -> None:
    """Start the lab's hosts and their guests; hosts already running are kept.

    Guests cycle through shapes (128-256 MiB, 1-2 vCPUs, host-model or kvm64
    CPU, vCPU-pinned or not, persistent or transient) and use KVM when
    /dev/kvm works, TCG otherwise.

    \b
    Example:
      sudo migplan lab up --hosts 3 --guests 2
      virsh -c qemu+tcp://127.0.0.2/system list --all
    """
    t0 = time.monotonic()
    the_lab = Lab(ctx.obj["state_dir"], hosts=hosts, guests=guests, first_ip=first_ip,
                  accel=None if accel == "auto" else accel)
    statuses = the_lab.up(progress=_progress)
    _progress(f"lab up in {time.monotonic() - t0:.1f} s ({the_lab.state_dir})")
    emit(_render(statuses, fmt))


@lab.command("status")
@format_option("table", "json")
@state_dir_option
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Show each lab host: address, URI, libvirtd pid, running or not, guests.

    JSON: a list of {name, address, uri, pid, running, guests: [{name, state,
    persistent}]}.

    \b
    Example:
      migplan lab status --format json
    """
    the_lab = Lab(ctx.obj["state_dir"])
    statuses = the_lab.status()
    if not statuses:
        _progress(f"no lab in {the_lab.state_dir} (start one with: migplan lab up)")
        if fmt != "json":
            return
    emit(_render(statuses, fmt))


@lab.command("down")
@state_dir_option
@click.pass_context
def down(ctx: click.Context) -> None:
    """Destroy the guests, stop every lab daemon and QEMU, remove the lab's state.

    \b
    Example:
      sudo migplan lab down
    """
    t0 = time.monotonic()
    Lab(ctx.obj["state_dir"]).down(progress=_progress)
    _progress(f"lab down in {time.monotonic() - t0:.1f} s")
