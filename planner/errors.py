"""One exception root; ``str()`` is the message a user reads.

The CLI maps each family to an exit code in one place (``planner.cli``).
"""

from __future__ import annotations


class MigplanError(Exception):
    """Root of every error migplan reports to a user."""

    exit_code = 1


class UsageError(MigplanError):
    """Wrong arguments or a command used the wrong way."""

    exit_code = 2


class InputError(MigplanError):
    """A file or document that cannot be used (broken, hostile, empty, wrong kind)."""

    exit_code = 1


class CpuError(MigplanError):
    """libvirt's CPU rules reject the input (unknown model/feature, mixed vendors...)."""

    exit_code = 1


class InfeasibleError(MigplanError):
    """A move or plan that the rules refuse."""

    exit_code = 3


class MigrationFailed(MigplanError):
    """A migration failed and the source confirmed the guest still runs there."""

    exit_code = 4


class GuestStateUnknown(MigplanError):
    """After a migration the hosts could not confirm where the guest is (a host did not
    answer, or both claim it; through Nova: Nova and libvirt disagree, or Nova did not
    answer): check before acting.  The message holds what each side said and the
    commands to check."""

    exit_code = 7


class GuestLost(MigplanError):
    """After a migration both hosts answered and neither runs the guest."""

    exit_code = 8


class PartialError(MigplanError):
    """Some hosts could not be collected; the others were."""

    exit_code = 5


class HostError(MigplanError):
    """One host could not be read.  ``kind``: unreachable, auth, timeout, unsupported,
    denied or error -- what ``collect`` records for it in the manifest."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind
