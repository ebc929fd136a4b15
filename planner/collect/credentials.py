"""libvirt credentials for SASL (kolla-/xavs-ansible's qemu+tcp on 16509): from a file or
the environment, handed to libvirt's authentication callback, never stored or printed.

A password file is either kolla-ansible's ``passwords.yml`` (its ``libvirt_sasl_password``)
or a file whose first line is the password.  The environment: ``MIGPLAN_LIBVIRT_PASSWORD``
(and ``MIGPLAN_LIBVIRT_USER``).  The user defaults to ``nova``, kolla's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from planner.errors import InputError

DEFAULT_USER = "nova"
PASSWORD_ENV = "MIGPLAN_LIBVIRT_PASSWORD"
USER_ENV = "MIGPLAN_LIBVIRT_USER"
KOLLA_KEY = "libvirt_sasl_password"


@dataclass(frozen=True)
class LibvirtCredentials:
    user: str
    password: str = field(repr=False)  # never in a repr, a log or an error

    def __str__(self) -> str:
        return f"{self.user}:***"


def password_from_file(text: str, source: str) -> str:
    """The password in a kolla passwords.yml or a one-line password file."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    if isinstance(doc, dict):
        value = doc.get(KOLLA_KEY)
        if value is None:
            raise InputError(f"{source}: no {KOLLA_KEY} in this YAML file (kolla-ansible's "
                             "passwords.yml has it)")
        return str(value)
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    if not line:
        raise InputError(f"{source}: the password file is empty")
    return line


def credentials(password_file_text: str | None, source: str, user: str | None,
                env: Mapping[str, str]) -> LibvirtCredentials | None:
    """What to answer libvirt's SASL prompts with, or None (no credentials given)."""
    if password_file_text is not None:
        password = password_from_file(password_file_text, source)
    elif env.get(PASSWORD_ENV):
        password = env[PASSWORD_ENV]
    else:
        return None
    return LibvirtCredentials(user or env.get(USER_ENV) or DEFAULT_USER, password)
