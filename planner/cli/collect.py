"""`migplan collect`: read every host into an inventory snapshot directory."""

from __future__ import annotations

import click

from planner.cli.output import (
    FiniteFloat,
    emit,
    libvirt_auth_options,
    libvirt_credentials,
    read_text,
    render_table,
    unwind_on_sigterm,
)
from planner.collect.nova import DEFAULT_NOVA_URI_TEMPLATE, nova_targets, read_cloud
from planner.collect.run import DEFAULT_TIMEOUT, DEFAULT_WORKERS, HostEvent, collect
from planner.collect.sources import (
    DEFAULT_URI_TEMPLATE,
    Target,
    dedupe,
    from_uris,
    parse_ansible_inventory,
    parse_hosts_file,
)
from planner.errors import UsageError
from planner.review.text import printable


def _lab_targets(state_dir: str | None) -> list[Target]:
    from planner.cli.migrate import lab_uris

    return [Target(uri, name) for name, uri in lab_uris(state_dir).items()]


@click.command("collect")
@click.argument("uris", nargs=-1, metavar="[URI]...")
@click.option("--hosts-file", metavar="F", help="One libvirt URI or hostname per line (# comments).")
@click.option("--ansible-inventory", metavar="F",
              help="An Ansible inventory (INI or YAML, as kolla-/xavs-ansible write them).")
@click.option("--group", metavar="G", help="The inventory group to collect (with its children).")
@click.option("--uri-template", metavar="T", default=None,
              help="How a hostname becomes a URI: {host} is the address (ansible_host when set; "
                   "a hypervisor's host_ip with --os-cloud), {name} the inventory or Nova host "
                   "name, {user} ansible_user (root when unset); ansible_port becomes the port "
                   f"of ssh URIs.  Default {DEFAULT_URI_TEMPLATE}; with --os-cloud the cloud "
                   f"entry's migplan mapping, else {DEFAULT_NOVA_URI_TEMPLATE}.")
@click.option("--lab", is_flag=True, help="Collect from the hosts of `migplan lab up`.")
@click.option("--state-dir", "state_dir", metavar="DIR", default=None,
              help="With --lab: the lab's state directory, as given to `migplan lab up "
                   "--state-dir` (default $MIGPLAN_LAB_DIR or /var/tmp/migplan-lab).")
@click.option("--os-cloud", "os_cloud", metavar="NAME",
              help="Read Nova (clouds.yaml / OS_* as the openstack CLI does) into nova.json, "
                   "then collect every nova-compute host's libvirt.")
@libvirt_auth_options
@click.option("--out", "out", metavar="DIR", required=True,
              help="New snapshot directory (must not exist, or be empty).")
@click.option("--timeout", type=FiniteFloat(min=0.001), default=DEFAULT_TIMEOUT,
              show_default=True, metavar="S",
              help="Seconds allowed per host.")
@click.option("--workers", type=int, default=DEFAULT_WORKERS, show_default=True, metavar="N",
              help="Hosts read in parallel.")
def collect_cmd(uris: tuple[str, ...], hosts_file: str | None, ansible_inventory: str | None,
                group: str | None, uri_template: str | None, lab: bool, state_dir: str | None,
                os_cloud: str | None, libvirt_user: str | None,
                libvirt_password_file: str | None, out: str, timeout: float,
                workers: int) -> None:
    """Collect capabilities, guests and resources of every host into a snapshot.

    Read-only: nothing changes on any host.  Each host's raw XML is stored as
    libvirt gave it, under DIR/hosts/<name>/, with DIR/manifest.json written
    last.  A host that cannot be read (unreachable, auth refused, timeout) is
    recorded in the manifest, the others are collected, and the exit code is 5.

    \b
    Example:
      migplan collect qemu+ssh://root@cn1/system qemu+ssh://root@cn2/system --out snap
      migplan collect --ansible-inventory multinode --group compute --out snap
      migplan collect --hosts-file hosts.txt --uri-template 'qemu+tcp://{host}/system' --out snap
      migplan collect --os-cloud mycloud --out snap        # Nova, then each compute's libvirt
      migplan collect --os-cloud mycloud --libvirt-password-file /etc/kolla/passwords.yml --out snap
    """
    if group and not ansible_inventory:
        raise UsageError("--group needs --ansible-inventory")
    if ansible_inventory and not group:
        raise UsageError("--ansible-inventory needs --group (e.g. --group compute)")
    targets: list[Target] = from_uris(list(uris))
    template = uri_template or DEFAULT_URI_TEMPLATE
    if hosts_file:
        targets += parse_hosts_file(read_text(hosts_file), hosts_file, template)
    if ansible_inventory and group:
        targets += parse_ansible_inventory(read_text(ansible_inventory), ansible_inventory, group,
                                           template)
    if state_dir is not None and not lab:
        raise UsageError("--state-dir is the lab's state directory: use it with --lab")
    if lab:
        targets += _lab_targets(state_dir)
    nova = None
    if os_cloud:
        click.echo(f"reading Nova (cloud {os_cloud})", err=True)
        nova, extra = read_cloud(os_cloud)
        targets += nova_targets(nova, extra, uri_template)
        click.echo(f"Nova: {len(nova.services)} compute services, {len(nova.servers)} servers",
                   err=True)
    targets = dedupe(targets)
    if not targets:
        raise UsageError("no hosts: give URIs, --hosts-file, --ansible-inventory/--group, --lab "
                         "or --os-cloud (a cloud without compute services has none)")

    total = len(targets)
    done = 0

    def progress(ev: HostEvent) -> None:
        nonlocal done
        who = ev.name or ev.uri
        if ev.status == "connecting":
            return
        done += 1
        width = 24
        filled = width * done // total
        bar = "#" * filled + "-" * (width - filled)
        line = f"[{bar}] {done}/{total} {who}: {ev.status}"
        if ev.detail:
            line += f" ({ev.detail})"
        click.echo(printable(line), err=True)  # names and errors come from the hosts

    creds = libvirt_credentials(libvirt_user, libvirt_password_file)
    unwind_on_sigterm()  # so the half-written snapshot is removed
    result = collect(targets, out, timeout=timeout, workers=workers, progress=progress,
                     say=lambda m: click.echo(printable(m), err=True), nova=nova,
                     credentials=creds)
    rows = [[h.name, h.status, h.guests, f"{h.duration:.2f}s",
             h.error or (f"{len(h.warnings)} reads failed, see manifest.json"
                         if h.warnings else "")] for h in result.hosts]
    emit(render_table(["host", "status", "guests", "duration", "error"], rows))
    ok = total - len(result.failed)
    emit(f"\n{ok} of {total} hosts collected into {result.out_dir} in {result.duration:.2f}s\n")
    result.raise_if_partial()
