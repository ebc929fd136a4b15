"""The Nova lab's configuration: every service's INI file as data, written by configparser.

``NovaLabSpec`` holds the addresses and paths; each function returns the sections of one
file (``{section: {option: value}}``).  Every service binds only the control address
(default 127.0.0.1), so two Nova labs run side by side on two loopback addresses.  The
reasons for the less obvious settings are beside them (Debian 12, OpenStack Zed).
"""

from __future__ import annotations

import configparser
import io
from dataclasses import dataclass
from pathlib import Path

Sections = dict[str, dict[str, str]]

# ports on the control address
PORTS = {"mariadb": 3306, "rabbitmq": 5672, "keystone": 5000,
         "glance-api": 9292, "placement": 8778, "neutron-server": 9696, "nova-api": 8774}
REGION = "RegionOne"
SERVICE_USERS = ("nova", "placement", "glance", "neutron")
DATABASES = ("keystone", "glance", "placement", "nova_api", "nova", "nova_cell0", "neutron")


@dataclass(frozen=True)
class ComputeSpec:
    """One nova-compute: its service host name (= the lab host's) and its libvirt host."""

    name: str  # lab1
    address: str  # the lab host's 127.0.0.N: my_ip, libvirt and migration address
    uri: str  # qemu+tcp://127.0.0.N/system


@dataclass(frozen=True)
class NovaLabSpec:
    root: Path  # the Nova lab's state directory
    control: str  # control-plane address (loopback)
    password: str  # every service's and admin's password (a lab: one secret)
    virt_type: str  # kvm | qemu
    computes: tuple[ComputeSpec, ...]

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def instances(self) -> Path:
        # one path for every compute (Nova writes it into the domain XML and never rewrites
        # it on migration), with each host's own disk bind-mounted over it in that host's
        # mount namespace (see planner/lab/nova.py)
        return self.root / "instances"

    @property
    def epmd_port(self) -> int:
        """Erlang's port mapper always listens on 127.0.0.1 and ::1 too (besides the address
        it is given): each lab needs its own port.  4369 (the default) for 127.0.0.1, else
        14000 + the address's last octet (below Linux's ephemeral ports, 32768-60999, which
        any outgoing connection may hold)."""
        last = int(self.control.rsplit(".", 1)[1])
        return 4369 if self.control == "127.0.0.1" else 14000 + last

    @property
    def dist_port(self) -> int:
        """RabbitMQ's distribution port listens on the control address only, but RabbitMQ
        refuses to start when that port is taken on any address: each lab needs its own.
        25672 (the default) for 127.0.0.1, else 15000 + the address's last octet."""
        last = int(self.control.rsplit(".", 1)[1])
        return 25672 if self.control == "127.0.0.1" else 15000 + last

    def url(self, service: str, path: str = "") -> str:
        return f"http://{self.control}:{PORTS[service]}{path}"

    def db(self, name: str) -> str:
        return f"mysql+pymysql://openstack:{self.password}@{self.control}/{name}"

    @property
    def transport_url(self) -> str:
        return f"rabbit://guest:guest@{self.control}:{PORTS['rabbitmq']}/"

    def log(self, name: str) -> Path:
        return self.root / "log" / f"{name}.log"


def render(sections: Sections) -> str:
    """INI text through configparser (no interpolation: values are written as given)."""
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # keep option case
    for name, options in sections.items():
        if name != "DEFAULT":
            cp.add_section(name)
        for k, v in options.items():
            cp.set(name, k, v)
    out = io.StringIO()
    out.write("# written by migplan lab --nova\n")
    cp.write(out)
    return out.getvalue()


def _auth(s: NovaLabSpec, user: str) -> dict[str, str]:
    return {"auth_url": s.url("keystone", "/v3"), "auth_type": "password",
            "project_domain_name": "Default", "user_domain_name": "Default",
            "project_name": "service", "region_name": REGION, "username": user,
            "password": s.password}


def _authtoken(s: NovaLabSpec, user: str) -> dict[str, str]:
    return {"www_authenticate_uri": s.url("keystone", "/"), **_auth(s, user)}


def keystone_conf(s: NovaLabSpec) -> Sections:
    keys = str(s.etc / "keystone" / "fernet-keys")
    return {"DEFAULT": {"log_file": str(s.log("keystone"))},
            "database": {"connection": s.db("keystone")},
            "token": {"provider": "fernet"},
            "fernet_tokens": {"key_repository": keys},
            "fernet_receipts": {"key_repository": keys},
            "credential": {"key_repository": str(s.etc / "keystone" / "credential-keys")}}


def placement_conf(s: NovaLabSpec) -> Sections:
    return {"DEFAULT": {"log_file": str(s.log("placement"))},
            "api": {"auth_strategy": "keystone"},
            "placement_database": {"connection": s.db("placement")},
            "keystone_authtoken": _authtoken(s, "placement")}


def glance_conf(s: NovaLabSpec) -> Sections:
    st = s.root / "state" / "glance"
    return {"DEFAULT": {"bind_host": s.control, "bind_port": str(PORTS["glance-api"]),
                        "workers": "1", "log_file": str(s.log("glance-api")),
                        "enabled_backends": "file:file"},
            "database": {"connection": s.db("glance")},
            "glance_store": {"default_backend": "file"},
            "file": {"filesystem_store_datadir": str(st / "images")},
            "os_glance_staging_store": {"filesystem_store_datadir": str(st / "staging")},
            "os_glance_tasks_store": {"filesystem_store_datadir": str(st / "tasks")},
            "paste_deploy": {"flavor": "keystone",
                             "config_file": str(s.etc / "glance" / "glance-api-paste.ini")},
            "keystone_authtoken": _authtoken(s, "glance"),
            "oslo_concurrency": {"lock_path": str(st / "lock")}}


def neutron_conf(s: NovaLabSpec) -> Sections:
    # The API and the ML2 plugin only: no agents, no networks.  Nova's API (server show and
    # list: security groups) and live migration (port bindings) call neutron even for
    # servers booted with --nic none; without it GET /servers/{id} answers 500.
    st = s.root / "state" / "neutron"
    return {"DEFAULT": {"bind_host": s.control, "bind_port": str(PORTS["neutron-server"]),
                        "core_plugin": "ml2", "service_plugins": "router,port_forwarding",
                        "auth_strategy": "keystone", "transport_url": s.transport_url,
                        "api_workers": "1", "rpc_workers": "0", "rpc_state_report_workers": "0",
                        "notify_nova_on_port_status_changes": "false",
                        "notify_nova_on_port_data_changes": "false", "state_path": str(st),
                        "api_paste_config": str(s.etc / "neutron" / "api-paste.ini"),
                        "log_file": str(s.log("neutron-server"))},
            "database": {"connection": s.db("neutron")},
            "keystone_authtoken": _authtoken(s, "neutron"),
            "oslo_concurrency": {"lock_path": str(st / "lock")}}


def ml2_conf(_s: NovaLabSpec) -> Sections:
    return {"ml2": {"type_drivers": "flat", "tenant_network_types": "", "mechanism_drivers": "",
                    "extension_drivers": ""},
            "ml2_type_flat": {"flat_networks": "*"}}


def nova_conf(s: NovaLabSpec) -> Sections:
    st = s.root / "state" / "nova"
    return {"DEFAULT": {"transport_url": s.transport_url, "my_ip": s.control,
                        "state_path": str(st), "instances_path": str(s.instances),
                        "compute_driver": "libvirt.LibvirtDriver",
                        "osapi_compute_listen": s.control, "osapi_compute_workers": "1",
                        "metadata_workers": "1"},
            "api": {"auth_strategy": "keystone"},
            "wsgi": {"api_paste_config": str(s.etc / "nova" / "api-paste.ini")},
            "api_database": {"connection": s.db("nova_api")},
            "database": {"connection": s.db("nova")},
            "keystone_authtoken": _authtoken(s, "nova"),
            "service_user": {"send_service_user_token": "true", **_auth(s, "nova")},
            "placement": _auth(s, "placement"),
            "glance": {"api_servers": s.url("glance-api")},
            "neutron": {**_auth(s, "neutron"), "service_metadata_proxy": "false"},
            "conductor": {"workers": "1"},
            "scheduler": {"workers": "1", "discover_hosts_in_cells_interval": "30"},
            "oslo_concurrency": {"lock_path": str(st / "lock")},
            "vnc": {"enabled": "false"}, "spice": {"enabled": "false"},
            "oslo_messaging_notifications": {"driver": "noop"}}


def nova_api_conf(_s: NovaLabSpec) -> Sections:
    # nova-api under uwsgi: RPC *calls* (os-hypervisors asks each compute for its uptime)
    # time out after 60 s unless the rabbit heartbeat runs in a native thread.
    return {"oslo_messaging_rabbit": {"heartbeat_in_pthread": "true"}}


def compute_conf(s: NovaLabSpec, c: ComputeSpec) -> Sections:
    libvirt = {"connection_uri": c.uri, "virt_type": s.virt_type, "cpu_mode": "host-model",
               "live_migration_scheme": "tcp", "live_migration_inbound_addr": c.address,
               "live_migration_tunnelled": "false", "live_migration_permit_post_copy": "false"}
    if s.virt_type == "kvm":
        # Nested KVM: host-model guests abort in QEMU ("failed to set MSR 0x10a",
        # IA32_ARCH_CAPABILITIES); without that one feature they run.
        libvirt["cpu_model_extra_flags"] = "-arch-capabilities"
    st = s.root / "state" / f"nova-{c.name}"
    return {"DEFAULT": {"host": c.name, "my_ip": c.address, "state_path": str(st)},
            "libvirt": libvirt,
            "oslo_concurrency": {"lock_path": str(st / "lock")}}


def rabbitmq_conf(s: NovaLabSpec) -> str:
    # RabbitMQ's own (sysctl-like) format, not INI
    return (f"listeners.tcp.default = {s.control}:{PORTS['rabbitmq']}\n"
            "log.file.level = warning\n"
            # guest may connect from loopback only (the default rule); every lab address is
            "loopback_users.guest = true\n")


def rabbitmq_env(s: NovaLabSpec) -> dict[str, str]:
    r = s.root / "rabbitmq"
    ip = ",".join(s.control.split("."))
    return {"HOME": str(r), "RABBITMQ_NODENAME": "novalab@localhost",
            "RABBITMQ_MNESIA_BASE": str(r / "mnesia"), "RABBITMQ_LOG_BASE": str(s.root / "log"),
            "RABBITMQ_CONFIG_FILE": str(r / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(r / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(s.root / "run" / "rabbitmq.pid"),
            "RABBITMQ_DIST_PORT": str(s.dist_port),
            # the distribution port on the control address only; epmd on the lab's own port
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-kernel inet_dist_use_interface {{{ip}}}",
            "ERL_EPMD_ADDRESS": s.control, "ERL_EPMD_PORT": str(s.epmd_port),
            "ERL_CRASH_DUMP": str(s.root / "log" / "erl_crash.dump")}
