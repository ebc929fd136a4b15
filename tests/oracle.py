"""libvirt itself as the test oracle for migplan's CPU engine.

Two ways in, both offline:

* ``TestDriverOracle`` -- libvirt-python on ``test:///default``:
  ``baselineCPU(xmls, flags)`` is exactly what ``virsh -c test:///default
  cpu-baseline`` answers (testConnectBaselineCPU: virCPUDefListParse as host
  CPUs, virCPUBaseline(migratable=false), optional virCPUExpandFeatures).  The
  test driver refuses VIR_CONNECT_BASELINE_CPU_MIGRATABLE.
* ``PrivateOracle`` -- ctypes on libvirt's own exported private symbols
  (version node LIBVIRT_PRIVATE_9.0.0), for what the test driver cannot
  answer: the migratable baseline (virCPUBaseline(..., migratable=true)) and
  CPU compare (virCPUCompareXML).  Private symbols change between libvirt
  releases, so the symbols are bound with ``dlvsym`` to exactly that version
  node; any other libvirt makes ``PrivateOracle.open()`` raise ``OracleMissing``
  and the tests skip with the reason.

Both load libvirt's CPU map from ``/usr/share/libvirt/cpu_map`` (PKGDATADIR):
``PrivateOracle`` checks it with libvirt's own resolver (virFileFindResource).

Answers are plain data (``Answer``) so the differential tests can compare
libvirt's and migplan's, errors included.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

LIBVIRT_SO = "libvirt.so.0"
PRIVATE_VERSION = "LIBVIRT_PRIVATE_9.0.0"
CPU_MAP_DIR = "/usr/share/libvirt/cpu_map"

# src/conf/cpu_conf.h: virCPUType
VIR_CPU_TYPE_HOST = 0
VIR_CPU_TYPE_GUEST = 1
VIR_CPU_TYPE_AUTO = 2
# src/cpu/cpu.h: virCPUCompareResult
COMPARE_RESULTS = {-1: "error", 0: "incompatible", 1: "identical", 2: "superset"}

# virErrorMsg prefixes libvirt puts before a message (src/util/virerror.c):
# stripped so that the text libvirt's CPU code wrote can be compared.
_LIBVIRT_PREFIXES = (
    "internal error: ",
    "invalid argument: ",
    "XML error: ",
    "unsupported configuration: ",
    "operation failed: ",
    "the CPU is incompatible with host CPU: ",
    "this function is not supported by the connection driver: ",
    "Requested operation is not valid: ",
)


class OracleMissing(Exception):
    """The libvirt needed as oracle is not there (or another version)."""


@dataclass(frozen=True)
class Answer:
    """One side's answer: ``text`` (XML or a compare result) or ``error``."""

    text: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def libvirt_core_message(msg: str) -> str:
    """libvirt's error message without virErrorMsg's category prefix."""
    for p in _LIBVIRT_PREFIXES:
        if msg.startswith(p):
            return msg[len(p):]
    return msg


class TestDriverOracle:
    """``test:///default`` through libvirt-python."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        try:
            import libvirt
        except ImportError as err:  # pragma: no cover - depends on the machine
            raise OracleMissing(f"libvirt-python is not installed: {err}") from None
        self._lv = libvirt
        # libvirt prints every error on stderr by default; the answer carries it.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        try:
            self.conn = libvirt.open("test:///default")
        except libvirt.libvirtError as err:  # pragma: no cover
            raise OracleMissing(f"cannot open test:///default: {err}") from None
        self.version = libvirt.getVersion()

    def baseline(self, xmls: list[str], expand: bool = False) -> Answer:
        flags = self._lv.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES if expand else 0
        try:
            return Answer(text=self.conn.baselineCPU(xmls, flags))
        except self._lv.libvirtError as err:
            return Answer(error=err.get_error_message())

    def close(self) -> None:
        self.conn.close()


class PrivateOracle:
    """libvirt's CPU driver called directly (virCPUBaseline, virCPUCompareXML)."""

    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL(LIBVIRT_SO)
        except OSError as err:
            raise OracleMissing(f"cannot load {LIBVIRT_SO}: {err}") from None
        libdl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        dlvsym = libdl.dlvsym
        dlvsym.restype = ctypes.c_void_p
        dlvsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        self.libc = libdl
        self.libc.free.argtypes = [ctypes.c_void_p]
        self.libc.free.restype = None

        def bind(name: str, version: str, restype: object, *argtypes: object) -> ctypes._CFuncPtr:
            addr = dlvsym(self.lib._handle, name.encode(), version.encode())
            if not addr:
                raise OracleMissing(
                    f"{LIBVIRT_SO} has no {name}@{version} (another libvirt version?)"
                )
            return ctypes.CFUNCTYPE(restype, *argtypes)(addr)

        P = ctypes.c_void_p
        S = ctypes.c_char_p
        pv = PRIVATE_VERSION
        self.virInitialize = bind("virInitialize", "LIBVIRT_0.1.0", ctypes.c_int)
        self.virGetLastErrorMessage = bind("virGetLastErrorMessage", "LIBVIRT_1.0.6", S)
        self.virResetLastError = bind("virResetLastError", "LIBVIRT_0.1.0", None)
        self.virArchFromString = bind("virArchFromString", pv, ctypes.c_int, S)
        # int virCPUDefParseXMLString(const char *xml, virCPUType type,
        #                             virCPUDef **cpu, bool validateXML)
        self.virCPUDefParseXMLString = bind(
            "virCPUDefParseXMLString", pv, ctypes.c_int, S, ctypes.c_int,
            ctypes.POINTER(P), ctypes.c_bool)
        # virCPUDef **virCPUDefListParse(const char **xmlCPUs, unsigned int ncpus,
        #                                virCPUType cpuType)
        self.virCPUDefListParse = bind(
            "virCPUDefListParse", pv, P, ctypes.POINTER(S), ctypes.c_uint, ctypes.c_int)
        self.virCPUDefListFree = bind("virCPUDefListFree", pv, None, P)
        self.virCPUDefFree = bind("virCPUDefFree", pv, None, P)
        # char *virCPUDefFormat(virCPUDef *def, virDomainNuma *numa)
        self.virCPUDefFormat = bind("virCPUDefFormat", pv, P, P, P)
        # virCPUDef *virCPUBaseline(virArch arch, virCPUDef **cpus, unsigned int ncpus,
        #     virDomainCapsCPUModels *models, const char **features, bool migratable)
        self.virCPUBaseline = bind(
            "virCPUBaseline", pv, P, ctypes.c_int, P, ctypes.c_uint, P, P, ctypes.c_bool)
        # int virCPUExpandFeatures(virArch arch, virCPUDef *cpu)
        self.virCPUExpandFeatures = bind("virCPUExpandFeatures", pv, ctypes.c_int,
                                         ctypes.c_int, P)
        # virCPUCompareResult virCPUCompareXML(virArch arch, virCPUDef *host,
        #     const char *xml, bool failIncompatible, bool validateXML)
        self.virCPUCompareXML = bind(
            "virCPUCompareXML", pv, ctypes.c_int, ctypes.c_int, P, S, ctypes.c_bool,
            ctypes.c_bool)
        # char *virFileFindResource(const char *filename, const char *builddir,
        #                           const char *installdir)
        self.virFileFindResource = bind("virFileFindResource", pv, P, S, S, S)

        if self.virInitialize() < 0:
            raise OracleMissing("virInitialize() failed")
        self.x86_64 = self.virArchFromString(b"x86_64")
        self._check_cpu_map()

    # -- helpers --------------------------------------------------------
    def _error(self) -> str:
        msg = self.virGetLastErrorMessage()
        self.virResetLastError()
        return (msg or b"unknown error").decode()

    def _take_string(self, ptr: int | None) -> str | None:
        if not ptr:
            return None
        try:
            return ctypes.string_at(ptr).decode()
        finally:
            self.libc.free(ptr)

    def _check_cpu_map(self) -> None:
        """libvirt resolves cpu_map files like cpu_map.c: the install dir unless
        it runs from a build tree.  Ask its resolver, then check the directory."""
        build = b"/nonexistent-libvirt-build-dir/src/cpu_map"
        got = self._take_string(
            self.virFileFindResource(b"index.xml", build, CPU_MAP_DIR.encode()))
        want = os.path.join(CPU_MAP_DIR, "index.xml")
        if got != want:
            raise OracleMissing(f"libvirt would load its CPU map from {got!r}, not {want!r}")
        if not os.path.isfile(want):
            raise OracleMissing(f"{want} is missing")

    # -- the oracle -----------------------------------------------------
    def baseline(self, xmls: list[str], *, migratable: bool = True,
                 expand: bool = False) -> Answer:
        """testConnectBaselineCPU with the migratable flag the test driver refuses:
        virCPUDefListParse(host) -> virCPUBaseline(NONE, ..., migratable)."""
        arr = (ctypes.c_char_p * (len(xmls) + 1))(*[x.encode() for x in xmls], None)
        cpus = self.virCPUDefListParse(arr, len(xmls), VIR_CPU_TYPE_HOST)
        if not cpus:
            return Answer(error=self._error())
        cpu = None
        try:
            cpu = self.virCPUBaseline(0, cpus, len(xmls), None, None, migratable)
            if not cpu:
                return Answer(error=self._error())
            # Every input here is x86 (x86_64 or i686: the same CPU driver).
            if expand and self.virCPUExpandFeatures(self.x86_64, cpu) < 0:
                return Answer(error=self._error())
            text = self._take_string(self.virCPUDefFormat(cpu, None))
            if text is None:
                return Answer(error=self._error())
            return Answer(text=text)
        finally:
            if cpu:
                self.virCPUDefFree(cpu)
            self.virCPUDefListFree(cpus)

    def compare(self, host_xml: str, cpu_xml: str, *,
                fail_incompatible: bool = False) -> Answer:
        """virCPUCompareXML(x86_64, host, xml, failIncompatible, validate=false):
        ``text`` is identical / superset / incompatible; ``error`` libvirt's
        message (with failIncompatible, the one naming the blocking features)."""
        host = ctypes.c_void_p()
        if self.virCPUDefParseXMLString(host_xml.encode(), VIR_CPU_TYPE_HOST,
                                        ctypes.byref(host), False) < 0:
            return Answer(error="host: " + self._error())
        try:
            rc = self.virCPUCompareXML(self.x86_64, host, cpu_xml.encode(),
                                       fail_incompatible, False)
            if rc < 0:
                return Answer(error=self._error())
            return Answer(text=COMPARE_RESULTS[rc])
        finally:
            self.virCPUDefFree(host)


_private: PrivateOracle | None = None
_private_missing: str | None = None


def private_oracle() -> PrivateOracle:
    """One process-wide PrivateOracle (libvirt's globals are process-wide anyway)."""
    global _private, _private_missing
    if _private is None:
        if _private_missing is not None:
            raise OracleMissing(_private_missing)
        try:
            _private = PrivateOracle()
        except OracleMissing as err:
            _private_missing = str(err)
            raise
    return _private
