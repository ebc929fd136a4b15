"""A clone with nothing beside it: the tests' real CPU data is inside the repository.

(issue 14, item 12) Tests once read ``../shared/corpus``, which a user's clone does not
have; the data now lives in tests/data/cputestdata with its origin.
"""

from __future__ import annotations

import re

from conftest import CORPUS, MODERN_CORPUS, REPO

OUTSIDE = re.compile(r"""(\.\./shared|parent\s*/\s*["']shared["']|/work/shared)""")


def test_no_test_script_or_benchmark_reads_outside_the_repository() -> None:
    offenders = []
    for folder in ("tests", "scripts", "benchmarks"):
        for p in (REPO / folder).rglob("*.py"):
            if p.name == "test_repo_self_contained.py":
                continue
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                if OUTSIDE.search(line):
                    offenders.append(f"{p.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []


def test_real_cpu_data_is_in_the_repository_with_its_origin() -> None:
    for d in (CORPUS, MODERN_CORPUS):
        assert d.resolve().is_relative_to(REPO)
        assert len(list(d.glob("*-host.xml"))) >= 8
        readme = (d / "README.md").read_text(encoding="utf-8")
        assert "libvirt/libvirt" in readme and "tests/cputestdata" in readme
