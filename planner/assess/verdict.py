"""The answer of one rule, carried unchanged from the rule to plans, drain waves and JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """How a rule answers; a move is as good as its worst rule."""

    OK = "ok"
    WARN = "warn"  # feasible, with a cost or a caveat
    UNKNOWN = "unknown"  # not proven: the snapshot lacks what the rule needs
    BLOCKED = "blocked"


#: Worst last: the verdict of a move is the worst of its rules.
SEVERITY = {Status.OK: 0, Status.WARN: 1, Status.UNKNOWN: 2, Status.BLOCKED: 3}
#: What `check` approves and `migrate` runs without --force ("unknown" is refused too).
FEASIBLE = frozenset({Status.OK, Status.WARN})


@dataclass(frozen=True)
class Verdict:
    rule: str
    status: Status
    code: str  # "<rule>.<outcome>", stable
    message: str

    @property
    def feasible(self) -> bool:
        return self.status in FEASIBLE

    def to_json(self) -> dict[str, Any]:
        """The one JSON shape of a verdict, in every output."""
        return {"rule": self.rule, "verdict": str(self.status), "code": self.code,
                "message": self.message}

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


def worst(verdicts: Sequence[Verdict]) -> Status:
    status = Status.OK
    for v in verdicts:
        if SEVERITY[v.status] > SEVERITY[status]:
            status = v.status
    return status
