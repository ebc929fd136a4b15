# The two commands of the README:
#   make demo   set up (Debian packages, .venv, migplan) and run the main job
#   make test   set up the same way and run every test (ruff, mypy, pytest)
.PHONY: setup demo test lint bench

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/migplan demo

lint: setup
	.venv/bin/ruff check planner tests benchmarks scripts
	.venv/bin/mypy

test: lint
	@# libvirt 11.3 in a Debian chroot, the second CPU oracle (cached; ~35 s the first time);
	@# without it the libvirt 11.3 oracle tests skip, saying why.
	@scripts/libvirt_oracle.sh >/dev/null || echo "libvirt 11.3 oracle unavailable: its tests skip" >&2
	.venv/bin/pytest -q -rs

bench: setup
	.venv/bin/python benchmarks/bench_cpu_baseline.py
