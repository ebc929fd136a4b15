"""Bad input to the CPU commands: one clear ``Error: ...`` line, the right exit
code (1 error, 2 usage, 3 incompatible), never a traceback, and nothing read
from outside the file (no entity expansion, no network)."""

from __future__ import annotations

import json
import random
import socket
import threading
from pathlib import Path

import pytest
from conftest import run_cli
from gen_clusters import host_cpu_xml

HASWELL = host_cpu_xml("Haswell", "Intel", ["vmx", "invtsc"])
SKYLAKE = host_cpu_xml("Skylake-Client", "Intel", ["vmx", "pdpe1gb"])
EPYC = host_cpu_xml("EPYC", "AMD", ["svm"])
SECRET = "migplan-sentinel-secret-7f3a9c"


def _write(tmp_path: Path, name: str, data: str | bytes) -> str:
    p = tmp_path / name
    if isinstance(data, str):
        p.write_text(data)
    else:
        p.write_bytes(data)
    return str(p)


def assert_error(res, code: int = 1, *words: str) -> None:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert res.stderr.startswith("Error: ") or "\nError: " in res.stderr, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert res.stdout == ""
    for w in words:
        assert w in res.stderr, (w, res.stderr)


# -- files that are not CPU XML ---------------------------------------------
BROKEN: dict[str, bytes] = {
    "malformed": b"<cpu><arch>x86_64</arch><model>Haswell</model><vendor>Intel</cpu>",
    "truncated": HASWELL.encode()[: len(HASWELL) // 2],
    "truncated-second-document": (HASWELL * 30 + HASWELL[:40]).encode(),
    "no-cpu": b"<domain type='kvm'><name>g</name><memory>1024</memory></domain>",
    "not-xml": b"this is not XML at all\n",
    "binary-junk-with-nul": bytes(random.Random(1).randrange(256) for _ in range(4096)),
    "binary-junk-without-nul": bytes(random.Random(2).randrange(1, 256) for _ in range(4096)),
    "empty": b"",
    "only-whitespace": b" \n\t\n",
    "only-a-comment": b"<!-- nothing here -->\n",
}


def test_text_between_documents_is_ignored_like_virsh(tmp_path):
    # virsh reads a file inside a <container> of its own, where text is allowed.
    res = run_cli("cpu-baseline", _write(tmp_path, "h.xml", "garbage " + HASWELL))
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("command", ["cpu-baseline", "cpu-compare-host", "cpu-compare-cpu"])
def test_broken_files_are_refused_with_one_error_line(tmp_path, name, command):
    bad = _write(tmp_path, f"{name}.xml", BROKEN[name])
    good = _write(tmp_path, "good.xml", HASWELL)
    if command == "cpu-baseline":
        res = run_cli("cpu-baseline", bad)
    elif command == "cpu-compare-host":
        res = run_cli("cpu-compare", bad, good)
    else:
        res = run_cli("cpu-compare", good, bad)
    assert_error(res, 1, bad)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_truncated_file_says_where_it_ends(tmp_path):
    res = run_cli("cpu-baseline", _write(tmp_path, "t.xml", BROKEN["truncated-second-document"]))
    assert_error(res, 1, "not well-formed XML", "end of the file")
    assert "container" not in res.stderr


def test_no_files_at_all_is_a_usage_error():
    assert_error(run_cli("cpu-baseline"), 2, "no input files")


def test_unknown_option_is_a_usage_error(tmp_path):
    assert_error(run_cli("cpu-baseline", "--no-such-flag", _write(tmp_path, "h.xml", HASWELL)), 2)


def test_cpu_compare_needs_two_files(tmp_path):
    assert_error(run_cli("cpu-compare", _write(tmp_path, "h.xml", HASWELL)), 2)


def test_nonexistent_file_is_an_error(tmp_path):
    assert_error(run_cli("cpu-baseline", str(tmp_path / "missing.xml")), 1, "no such file")


def test_directory_is_an_error(tmp_path):
    assert_error(run_cli("cpu-baseline", str(tmp_path)), 1, "is a directory")


def test_unreadable_cpu_map_is_an_error(tmp_path):
    res = run_cli("cpu-baseline", _write(tmp_path, "h.xml", HASWELL), "--cpu-map",
                  str(tmp_path / "nope"))
    assert_error(res, 1, "--cpu-map")


# -- CPU XML libvirt refuses ------------------------------------------------
def test_unknown_model_is_an_error(tmp_path):
    f = _write(tmp_path, "h.xml", HASWELL + host_cpu_xml("Skylake-Future", "Intel", []))
    assert_error(run_cli("cpu-baseline", f), 1, "Unknown CPU model Skylake-Future")


def test_unknown_feature_is_an_error(tmp_path):
    f = _write(tmp_path, "h.xml", HASWELL + host_cpu_xml("Haswell", "Intel", ["avx1024"]))
    assert_error(run_cli("cpu-baseline", f), 1, "Unknown CPU feature avx1024")


def test_mixed_vendors_are_an_error(tmp_path):
    f = _write(tmp_path, "h.xml", HASWELL + EPYC)
    assert_error(run_cli("cpu-baseline", f), 1, "CPU vendors do not match")


def test_vendor_contradicting_its_model_is_an_error(tmp_path):
    f = _write(tmp_path, "h.xml", HASWELL + host_cpu_xml("Haswell", "AMD", []))
    assert_error(run_cli("cpu-baseline", f), 1, "CPU vendor Intel of model Haswell differs")


def test_mixed_arches_are_an_error(tmp_path):
    f = _write(tmp_path, "h.xml",
               HASWELL + host_cpu_xml("Haswell", "Intel", [], arch="i686"))
    assert_error(run_cli("cpu-baseline", f), 1, "different architectures", "CPU #2")


def test_mixed_vendors_across_files_are_an_error(tmp_path):
    res = run_cli("cpu-baseline", _write(tmp_path, "a.xml", HASWELL),
                  _write(tmp_path, "b.xml", EPYC))
    assert_error(res, 1, "CPU vendors do not match")


def test_non_x86_cpu_is_an_error(tmp_path):
    f = _write(tmp_path, "h.xml", "<cpu><arch>aarch64</arch><model>cortex-a57</model></cpu>")
    assert_error(run_cli("cpu-baseline", f), 1, "x86 only")


# -- hostile XML: nothing outside the file is ever read --------------------
class _Listener:
    """A local TCP port that records whether anybody connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._t.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    lst = _Listener()
    yield lst
    lst.close()


def _xxe_documents(secret_file: Path, port: int) -> dict[str, str]:
    return {
        "xxe-file": (
            f'<?xml version="1.0"?>\n<!DOCTYPE cpu [<!ENTITY s SYSTEM "file://{secret_file}">]>\n'
            "<cpu><arch>x86_64</arch><model>&s;</model><vendor>Intel</vendor></cpu>\n"
        ),
        "xxe-feature-name": (
            f'<!DOCTYPE cpu [<!ENTITY s SYSTEM "{secret_file}">]>\n'
            "<cpu><arch>x86_64</arch><model>Haswell</model><feature name='&s;'/></cpu>\n"
        ),
        "xxe-http-local": (
            f'<!DOCTYPE cpu [<!ENTITY s SYSTEM "http://127.0.0.1:{port}/x">]>\n'
            "<cpu><arch>x86_64</arch><model>&s;</model></cpu>\n"
        ),
        "xxe-http-discard-port": (
            '<!DOCTYPE cpu [<!ENTITY s SYSTEM "http://127.0.0.1:9/">]>\n'
            "<cpu><arch>x86_64</arch><model>&s;</model></cpu>\n"
        ),
        "external-dtd": (
            f'<!DOCTYPE cpu SYSTEM "http://127.0.0.1:{port}/cpu.dtd">\n'
            "<cpu><arch>x86_64</arch><model>Haswell</model></cpu>\n"
        ),
        "parameter-entity": (
            f'<!DOCTYPE cpu [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p.dtd"> %p;]>\n'
            "<cpu><arch>x86_64</arch><model>Haswell</model></cpu>\n"
        ),
        "xxe-in-second-document": (
            HASWELL + f'<!DOCTYPE cpu [<!ENTITY s SYSTEM "file://{secret_file}">]>\n'
            "<cpu><arch>x86_64</arch><model>&s;</model></cpu>\n"
        ),
        "billion-laughs": (
            '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
            + "".join(f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'
                      for i in range(1, 10))
            + "]>\n<cpu><arch>x86_64</arch><model>&lol9;</model></cpu>\n"
        ),
        "lowercase-doctype": (
            f'<!doctype cpu [<!entity s SYSTEM "file://{secret_file}">]>\n'
            "<cpu><arch>x86_64</arch><model>&s;</model></cpu>\n"
        ),
        "undeclared-entity": "<cpu><arch>x86_64</arch><model>&secret;</model></cpu>\n",
    }


@pytest.mark.parametrize("name", sorted(_xxe_documents(Path("/x"), 1)))
@pytest.mark.parametrize("command", ["cpu-baseline", "cpu-compare"])
def test_hostile_xml_reads_nothing_outside_the_file(tmp_path, listener, name, command):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    f = _write(tmp_path, f"{name}.xml", _xxe_documents(secret, listener.port)[name])
    if command == "cpu-baseline":
        res = run_cli("cpu-baseline", f, timeout=60)
    else:
        res = run_cli("cpu-compare", _write(tmp_path, "host.xml", HASWELL), f, timeout=60)
    assert_error(res, 1)
    assert SECRET not in res.stdout + res.stderr
    assert listener.connections == 0


# -- cpu-compare exit codes and JSON shapes --------------------------------
def test_cpu_compare_exits_3_when_a_host_is_incompatible(tmp_path):
    hosts = _write(tmp_path, "hosts.xml", HASWELL + SKYLAKE)
    guest = _write(tmp_path, "guest.xml", "<domain><name>g</name><cpu mode='custom' "
                   "match='exact'><model>Skylake-Client</model></cpu></domain>")
    res = run_cli("cpu-compare", hosts, guest, "--format", "json")
    assert res.returncode == 3, res.stderr
    doc = json.loads(res.stdout)
    assert [h["result"] for h in doc["hosts"]] == ["incompatible", "superset"]
    assert doc["hosts"][0]["blocking_features"]
    assert "Host CPU does not provide required features" in doc["hosts"][0]["message"]


def test_cpu_compare_exits_0_when_every_host_is_compatible(tmp_path):
    hosts = _write(tmp_path, "hosts.xml", HASWELL + SKYLAKE)
    base = run_cli("cpu-baseline", hosts)
    assert base.returncode == 0, base.stderr
    guest = _write(tmp_path, "baseline.xml", base.stdout)
    res = run_cli("cpu-compare", hosts, guest)
    assert res.returncode == 0, res.stderr
    assert "incompatible" not in res.stdout


def test_cpu_baseline_json_shape(tmp_path):
    res = run_cli("cpu-baseline", _write(tmp_path, "h.xml", HASWELL + SKYLAKE), "--format",
                  "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) == {"model", "vendor", "features", "disabled"}
    assert isinstance(doc["model"], str) and doc["vendor"] == "Intel"
    assert all(isinstance(f, str) for f in doc["features"] + doc["disabled"])


def test_cpu_baseline_json_vendor_is_null_when_a_host_has_none(tmp_path):
    f = _write(tmp_path, "h.xml", HASWELL + host_cpu_xml("Haswell", None, []))
    doc = json.loads(run_cli("cpu-baseline", f, "--format", "json").stdout)
    assert doc["vendor"] is None


def test_cpu_baseline_json_lists_removed_features_as_disabled(tmp_path):
    f = _write(tmp_path, "h.xml", host_cpu_xml("EPYC", "AMD", []))
    doc = json.loads(run_cli("cpu-baseline", f, "--format", "json").stdout)
    assert doc["model"] == "EPYC" and "monitor" in doc["disabled"]


def test_cpu_compare_json_shape(tmp_path):
    hosts = _write(tmp_path, "hosts.xml", HASWELL)
    res = run_cli("cpu-compare", hosts, hosts, "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) == {"cpu", "hosts"}
    assert set(doc["hosts"][0]) == {"host", "host_model", "result", "blocking_features",
                                    "message"}
    assert doc["hosts"][0]["result"] == "identical"
