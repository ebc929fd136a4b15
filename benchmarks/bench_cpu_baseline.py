#!/usr/bin/env python3
"""Time ``migplan cpu-baseline`` against ``virsh -c test:///default cpu-baseline``.

    python benchmarks/bench_cpu_baseline.py [--sizes 1000,10000,100000] [--runs 5] [--keep DIR]

Builds capabilities-like inputs -- host ``<cpu>`` elements as ``virsh
capabilities`` prints them (arch, model, vendor, microcode, signature, TSC
counter, topology, maxphysaddr, 20-30 extra features, pages), a seeded mix of
a handful of distinct CPUs as in a real cluster -- concatenated into one file
per size, then times both commands end to end as subprocesses in the same run
(median wall time of ``--runs`` runs), checks that their outputs are equal
and prints the figures and ratios.

virsh reads at most 10 MiB per file (virFileReadAll in virsh's cpu-baseline),
so it refuses the 100,000-host file: that row shows migplan alone.

Floors (exit status 1 when missed): migplan at most 0.5x virsh's wall time at
10,000 hosts; 100,000 hosts in under 5 s.  It also checks that the command's
imports stay light (no pandas, no networkx).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from planner.adapters.catalogs import default_catalog  # noqa: E402

VIRSH_MAX_FILE = 10 * 1024 * 1024

# A cluster bought over a few years: (model, weight, signature, extra features).
# Extras are what `virsh capabilities` lists on such hosts beyond the model.
_HOST_EXTRAS = ["ds", "acpi", "ss", "ht", "tm", "pbe", "dtes64", "monitor", "ds_cpl", "vmx",
                "smx", "est", "tm2", "xtpr", "pdcm", "dca", "osxsave", "tsc_adjust", "cmt",
                "clflushopt", "intel-pt", "md-clear", "stibp", "arch-capabilities", "ssbd",
                "xsaves", "mbm_total", "mbm_local", "pdpe1gb", "invtsc", "ibpb", "ibrs",
                "amd-stibp", "amd-ssbd", "rdctl-no", "skip-l1dfl-vmentry", "mds-no",
                "pschange-mc-no", "tsx-ctrl"]
FLEET = [
    ("Haswell-noTSX-IBRS", 10, (6, 63, 2)),
    ("Broadwell-IBRS", 15, (6, 79, 1)),
    ("Skylake-Server-IBRS", 30, (6, 85, 4)),
    ("Cascadelake-Server", 30, (6, 85, 7)),
    ("Cascadelake-Server-noTSX", 5, (6, 85, 7)),
    ("Icelake-Server", 10, (6, 106, 6)),
]


def distinct_cpus() -> list[tuple[str, int]]:
    """The fleet's host <cpu> elements (XML, weight)."""
    cat = default_catalog()
    rng = random.Random(2026)
    out = []
    for model, weight, (fam, mod, step) in FLEET:
        m = cat.model_by_name[model]
        extras = [f for f in _HOST_EXTRAS
                  if f in cat.feature_by_name and f not in m.features and rng.random() < 0.6]
        lines = [
            "<cpu>", "  <arch>x86_64</arch>", f"  <model>{model}</model>", "  <vendor>Intel</vendor>",
            f"  <microcode version='{rng.randrange(1 << 20, 1 << 28)}'/>",
            f"  <signature family='{fam}' model='{mod}' stepping='{step}'/>",
            f"  <counter name='tsc' frequency='{rng.choice((2100, 2300, 2600)) * 1000000}' "
            "scaling='no'/>",
            f"  <topology sockets='1' dies='1' cores='{rng.choice((16, 20, 24, 28))}' threads='2'/>",
            "  <maxphysaddr mode='emulate' bits='46'/>",
            *[f"  <feature name='{f}'/>" for f in extras],
            "  <pages unit='KiB' size='4'/>", "  <pages unit='KiB' size='2048'/>",
            "  <pages unit='KiB' size='1048576'/>", "</cpu>",
        ]
        out.append(("\n".join(lines) + "\n", weight))
    return out


def build_input(path: Path, hosts: int) -> int:
    cpus = distinct_cpus()
    rng = random.Random(hosts)
    xmls = [c for c, _ in cpus]
    weights = [w for _, w in cpus]
    chosen = rng.choices(xmls, weights=weights, k=hosts)
    data = "".join(chosen).encode()
    path.write_bytes(data)
    return len(data)


def migplan_command() -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    exe = Path(sys.executable).parent / "migplan"
    if exe.exists():
        return [str(exe)], env
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return [sys.executable, "-m", "planner"], env


def timed(cmd: list[str], runs: int, env: dict[str, str] | None = None
          ) -> tuple[float, subprocess.CompletedProcess[str]]:
    times = []
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)  # warm-up
    for _ in range(runs):
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        times.append(time.perf_counter() - t)
    return statistics.median(times), res


def light_imports(mp: list[str], env: dict[str, str], path: Path) -> list[str]:
    """Heavy modules imported by `migplan cpu-baseline` (should be none)."""
    if mp[0].endswith("migplan"):
        cmd = [sys.executable, "-X", "importtime", "-c",
               "import sys; from planner.cli import main; sys.argv[0] = 'migplan'; main()",
               "cpu-baseline", str(path)]
    else:
        cmd = [sys.executable, "-X", "importtime", *mp[1:], "cpu-baseline", str(path)]
    e = dict(env)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    res = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=120)
    heavy = ("pandas", "networkx", "numpy", "libvirt")
    found = set()
    for line in res.stderr.splitlines():
        if "import time:" in line:
            name = line.rsplit("|", 1)[-1].strip()
            if name.split(".")[0] in heavy:
                found.add(name.split(".")[0])
    return sorted(found)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", metavar="DIR", help="write the inputs here and keep them")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    virsh = shutil.which("virsh")
    mp, env = migplan_command()
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="migplan-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print("# migplan cpu-baseline vs virsh -c test:///default cpu-baseline")
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"migplan via {' '.join(Path(c).name for c in mp)}, median of {args.runs} runs")
    print(f"{'hosts':>8} {'MiB':>6} {'migplan s':>10} {'virsh s':>9} {'ratio':>6}  output")
    failures: list[str] = []
    try:
        for n in sizes:
            path = workdir / f"hosts-{n}.xml"
            size = build_input(path, n)
            runs = args.runs if n <= 10000 else max(1, min(args.runs, 3))
            t_mp, r_mp = timed([*mp, "cpu-baseline", str(path)], runs, env)
            if r_mp.returncode != 0:
                failures.append(f"{n} hosts: migplan failed: {r_mp.stderr.strip()}")
            t_v: float | None = None
            note = ""
            if virsh is None:
                note = "virsh not installed"
            elif size > VIRSH_MAX_FILE:
                _, r_v = timed([virsh, "-c", "test:///default", "cpu-baseline", str(path)], 1)
                refused = r_v.returncode != 0
                note = ("virsh refuses it (10 MiB file limit)" if refused
                        else "virsh read it (no longer a 10 MiB limit?)")
            else:
                t_v, r_v = timed([virsh, "-c", "test:///default", "cpu-baseline", str(path)], runs)
                same = r_v.returncode == 0 and r_v.stdout == r_mp.stdout + "\n"
                note = "equal" if same else "DIFFERENT"
                if not same:
                    failures.append(f"{n} hosts: outputs differ")
                # --features too (not timed): the expanded answers must be equal as well.
                rf_mp = subprocess.run([*mp, "cpu-baseline", "--features", str(path)],
                                       capture_output=True, text=True, env=env, timeout=600)
                rf_v = subprocess.run([virsh, "-c", "test:///default", "cpu-baseline",
                                       "--features", str(path)],
                                      capture_output=True, text=True, timeout=600)
                if rf_v.returncode != 0 or rf_v.stdout != rf_mp.stdout + "\n":
                    note += ", --features DIFFERENT"
                    failures.append(f"{n} hosts: --features outputs differ")
                else:
                    note += ", --features equal"
            ratio = f"{t_mp / t_v:6.2f}" if t_v else "     -"
            v = f"{t_v:9.3f}" if t_v else "        -"
            print(f"{n:>8} {size / 2**20:6.1f} {t_mp:10.3f} {v} {ratio}  {note}")
            if n == 10000 and not t_v:
                failures.append("10,000 hosts: virsh could not be timed, floor not measured")
            if n == 10000 and t_v and t_mp > 0.5 * t_v:
                failures.append(f"10,000 hosts: {t_mp:.3f} s is more than 0.5x virsh's {t_v:.3f} s")
            if n == 100000 and t_mp >= 5.0:
                failures.append(f"100,000 hosts: {t_mp:.3f} s, floor is 5 s")
        heavy = light_imports(mp, env, workdir / f"hosts-{sizes[0]}.xml")
        print(f"# imports of cpu-baseline: {'light' if not heavy else 'HEAVY: ' + ', '.join(heavy)}")
        if heavy:
            failures.append("cpu-baseline imports " + ", ".join(heavy))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for f in failures:
        print(f"FLOOR MISSED: {f}")
    print("# floors: <= 0.5x virsh at 10,000 hosts; 100,000 hosts < 5 s: "
          + ("met" if not failures else "NOT met"))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
