"""`migplan lab up|status|down`: real libvirt hosts on this machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from planner.cli.output import emit, format_option, render_json, render_table
from planner.errors import UsageError
from planner.lab import STATE_DIR_ENV, HostStatus, Lab, default_state_dir
from planner.lab.nova import ComputeStatus, NovaLab


def _progress(msg: str) -> None:
    click.echo(msg, err=True)


def _render(statuses: list[HostStatus], fmt: str, nova: NovaLab | None = None) -> str:
    """Hosts (and, for a Nova lab, each host's nova-compute and the control services).

    JSON: a plain lab's is the list of hosts; a Nova lab's is {"hosts": [... each with
    "nova_compute": {host, pid, running, state, status}], "nova_services": [{name, pid,
    running, address, log}]}."""
    computes = {c.host: c for c in nova.computes()} if nova is not None else {}
    services = nova.services() if nova is not None else []
    if fmt == "json":
        out = []
        for s in statuses:
            d = s.to_dict()
            if nova is not None:
                c = computes.get(s.name)
                d["nova_compute"] = c.to_dict() if c else None
            out.append(d)
        if nova is not None:
            return render_json({"hosts": out, "nova_services": [x.to_dict() for x in services]})
        return render_json(out)
    rows = []
    for s in statuses:
        guests = ", ".join(f"{g.name} ({g.state}{'' if g.persistent else ', transient'})"
                           for g in s.guests)
        rows.append([s.name, s.uri, s.pid or "-", "running" if s.running else "stopped",
                     guests or "-"])
    text = render_table(["host", "uri", "pid", "state", "guests"], rows)
    if nova is not None:
        srows = [[x.name, x.address or "-", x.pid or "-",
                  "running" if x.running else "stopped", _nova_state(x.name, computes)]
                 for x in services]
        text += "\n\n" + render_table(["nova service", "address", "pid", "state", "nova says"],
                                        srows)
    return text


def _nova_state(name: str, computes: dict[str, ComputeStatus]) -> str:
    c = computes.get(name.removeprefix("nova-compute-")) if name.startswith("nova-") else None
    if c is None or c.state is None:
        return "-"
    return f"{c.state}, {c.status}"


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
@click.option("--sasl", is_flag=True, default=None,
              help="libvirtd with auth_tcp = sasl (DIGEST-MD5, user nova, as kolla-ansible); "
                   "the password is in DIR/passwords.yml (libvirt_sasl_password).")
@click.option("--nova", is_flag=True,
              help="Also run a real OpenStack Nova (Zed, Debian 12 packages) driving the hosts; "
                   "--guests are then servers booted through Nova (default 1 per host).")
@click.option("--control-ip", metavar="ADDRESS", default=None,
              help="With --nova: the loopback address of Nova's control plane "
                   "(default 127.0.0.1; another address runs a second Nova lab beside it).")
@format_option("table", "json")
@state_dir_option
@click.pass_context
def up(ctx: click.Context, hosts: int | None, guests: int | None, first_ip: int | None,
       accel: str, sasl: bool | None, nova: bool, control_ip: str | None, fmt: str) -> None:
    """Start the lab's hosts and their guests; hosts already running are kept.

    Guests cycle through shapes (128-256 MiB, 1-2 vCPUs, host-model or kvm64
    CPU, vCPU-pinned or not, persistent or transient) and use KVM when
    /dev/kvm works, TCG otherwise.

    With --nova (docs/nova.md): keystone, glance, placement, neutron-server,
    nova-api/conductor/scheduler on the control address and one nova-compute
    per host (Nova's host name = the lab host's name), M servers per host
    booted through Nova, and DIR/clouds.yaml with the cloud migplan-lab.
    Installs the Debian packages it needs (as root) when they are missing.

    \b
    Example:
      sudo migplan lab up --hosts 3 --guests 2
      virsh -c qemu+tcp://127.0.0.2/system list --all
      sudo migplan lab up --nova --hosts 2 --guests 1
      export OS_CLIENT_CONFIG_FILE=/var/tmp/migplan-lab/clouds.yaml
      migplan collect --os-cloud migplan-lab --out snap
    """
    t0 = time.monotonic()
    accel_arg = None if accel == "auto" else accel
    if nova:
        from planner.lab.nova import CLOUD, NovaLab

        if sasl:
            raise UsageError("--sasl and --nova: not yet (the Nova lab's computes reach their "
                             "libvirt without authentication)")
        nlab = NovaLab(ctx.obj["state_dir"], hosts=hosts, guests=guests, first_ip=first_ip,
                       accel=accel_arg, control=control_ip)
        nlab.up(progress=_progress)
        _progress(f"Nova lab up in {time.monotonic() - t0:.1f} s ({nlab.lab.state_dir})")
        emit(_render(nlab.lab.status(), fmt, nlab))
        if fmt != "json":
            emit(f"\nUse it:\n  export OS_CLIENT_CONFIG_FILE={nlab.clouds_yaml}\n"
                 f"  openstack --os-cloud {CLOUD} server list\n"
                 f"  migplan collect --os-cloud {CLOUD} --out snap\n")
        return
    if control_ip is not None:
        raise UsageError("--control-ip needs --nova")
    the_lab = Lab(ctx.obj["state_dir"], hosts=hosts, guests=guests, first_ip=first_ip,
                  accel=accel_arg, sasl=sasl)
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
    nlab = NovaLab(ctx.obj["state_dir"])
    statuses = nlab.lab.status()
    if not statuses:
        _progress(f"no lab in {nlab.lab.state_dir} (start one with: migplan lab up)")
        if fmt != "json":
            return
    emit(_render(statuses, fmt, nlab if nlab.running() else None))


@lab.command("down")
@state_dir_option
@click.pass_context
def down(ctx: click.Context) -> None:
    """Destroy the guests, stop every lab daemon and QEMU, remove the lab's state.

    A Nova lab's services (and its servers' domains) go first, each stopped by
    its process group.

    \b
    Example:
      sudo migplan lab down
    """
    t0 = time.monotonic()
    nlab = NovaLab(ctx.obj["state_dir"])
    if nlab.running() or nlab.root.exists():
        nlab.down(progress=_progress)
    else:
        nlab.lab.down(progress=_progress)
    _progress(f"lab down in {time.monotonic() - t0:.1f} s")
