"""The Python module against a real guest: what libvmstate reads is checked against what the guest said about itself.

Run from python/ (tests/VmState.Integration/NativeAbiTests.cs does, on the fixture guest):

    VMSTATE_LIB=.../libvmstate.so VMSTATE_TEST_SNAPSHOT=guest.mig VMSTATE_TEST_TRUTH=truth.json \
        python3 -m unittest discover -s tests -v

    VMSTATE_TEST_SNAPSHOT  a snapshot of the fixture guest (a migration stream)
    VMSTATE_TEST_TRUTH     JSON: the guest's ground truth taken with the snapshot: {"kernel", "banner",
                           "processes": [{"pid", "ppid", "uid", "comm"}], "marker": {"pid", "value", "addr", "paddr"}}
    VMSTATE_TEST_PS_JSON   optional: `vmstate ps --json` of the same snapshot, to compare byte for byte
    VMSTATE_TEST_QMP       optional: the QMP socket of the guest, still running, for the attach test
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any, Dict

import vmstate
from vmstate import KERNEL, Status, Vm, VmStateError

SNAPSHOT = os.environ.get("VMSTATE_TEST_SNAPSHOT", "")
TRUTH_PATH = os.environ.get("VMSTATE_TEST_TRUTH", "")
PS_JSON = os.environ.get("VMSTATE_TEST_PS_JSON")
QMP = os.environ.get("VMSTATE_TEST_QMP")
TRUTH: Dict[str, Any] = {}


def setUpModule() -> None:
    # Without a guest these tests would prove nothing: refuse to run rather than pass.
    if not SNAPSHOT or not TRUTH_PATH:
        raise RuntimeError("set VMSTATE_TEST_SNAPSHOT and VMSTATE_TEST_TRUTH (see this file's docstring)")
    with open(TRUTH_PATH, encoding="utf-8") as f:
        TRUTH.update(json.load(f))


def qmp_status(path: str) -> str:
    """The guest's run state, asked over QMP directly (not through the library)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(path)
        stream = s.makefile("rw", encoding="utf-8")
        json.loads(stream.readline())  # the greeting
        replies = []
        for command in ("qmp_capabilities", "query-status"):
            stream.write(json.dumps({"execute": command}) + "\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline())
                if "return" in reply or "error" in reply:
                    replies.append(reply)
                    break
        return replies[1]["return"]["status"]


class SnapshotTests(unittest.TestCase):
    vm: Vm

    @classmethod
    def setUpClass(cls) -> None:
        cls.vm = Vm.open(SNAPSHOT)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.vm.close()

    def test_processes_are_the_ones_the_guest_printed(self) -> None:
        found = {p["pid"]: p for p in self.vm.processes()}
        printed = {p["pid"]: p for p in TRUTH["processes"]}
        self.assertEqual([], sorted(set(printed) - set(found)), "processes the guest printed but the snapshot lacks")
        for pid, want in printed.items():
            got = found[pid]
            self.assertEqual((want["ppid"], want["uid"], want["comm"]), (got["ppid"], got["uid"], got["comm"]), f"pid {pid}")
        # Others came and went after the guest printed: kernel threads (of kthreadd) and init's short-lived children.
        for pid, got in found.items():
            if pid not in printed:
                self.assertIn(got["ppid"], (1, 2), f"pid {pid} ({got['comm']}) was not printed by the guest")
        marker = found[TRUTH["marker"]["pid"]]
        self.assertFalse(marker["kernelThread"])
        self.assertTrue(found[2]["kernelThread"])

    def test_the_json_is_what_vmstate_ps_json_prints(self) -> None:
        document = json.loads(self.vm.processes_json())
        self.assertEqual(TRUTH["kernel"], document["release"])
        if PS_JSON is None:
            self.skipTest("VMSTATE_TEST_PS_JSON not set")
        with open(PS_JSON, encoding="utf-8") as f:
            self.assertEqual(f.read(), self.vm.processes_json())

    def test_threads_and_no_cmdline_flags(self) -> None:
        threads = self.vm.processes(threads=True, cmdline=False)
        leaders = self.vm.processes()
        self.assertGreaterEqual(len(threads), len(leaders))
        self.assertTrue(all(p["cmdline"] is None for p in threads))
        self.assertEqual("/bin/sh /init", next(p for p in leaders if p["pid"] == 1)["cmdline"])

    def test_the_kernel_banner_through_the_kernels_page_tables_and_physically(self) -> None:
        banner = (TRUTH["banner"] + "\n").encode()
        address = self.vm.symbol("linux_banner")
        self.assertEqual(banner, self.vm.read_virtual(address, len(banner)))
        self.assertEqual(banner, self.vm.read_virtual(address, len(banner), pid=KERNEL))
        physical = self.vm.translate(address)
        self.assertEqual(banner, self.vm.read_physical(physical, len(banner)))
        self.assertEqual(address + 8, self.vm.symbol("linux_banner+8"))

    def test_the_marker_through_its_own_page_tables(self) -> None:
        marker = TRUTH["marker"]
        value = marker["value"].encode()
        self.assertEqual(value, self.vm.read_virtual(marker["addr"], len(value), pid=marker["pid"]))
        self.assertEqual(marker["paddr"], self.vm.translate(marker["addr"], pid=marker["pid"]))
        self.assertEqual(value, self.vm.read_physical(marker["paddr"], len(value)))

    def test_short_reads_stop_where_memory_ends(self) -> None:
        self.assertEqual(b"", self.vm.read_physical(1 << 60, 16))
        self.assertEqual(b"", self.vm.read_virtual(0, 16))  # address 0 is not mapped in the kernel's page tables
        self.assertEqual(b"", self.vm.read_physical(0, 0))

    def test_errors_carry_the_code_of_the_librarys_exception(self) -> None:
        cases = [
            (Status.UNMAPPED, lambda: self.vm.translate(0)),
            (Status.NOT_FOUND, lambda: self.vm.symbol("vmstate_no_such_symbol")),
            (Status.NOT_FOUND, lambda: self.vm.read_virtual(0x400000, 8, pid=max(p["pid"] for p in TRUTH["processes"]) + 1000)),
            (Status.GUEST_DATA, lambda: self.vm.read_virtual(0x400000, 8, pid=2)),  # kthreadd has no user memory
        ]
        for code, call in cases:
            with self.assertRaises(VmStateError) as raised:
                call()
            self.assertEqual(code, raised.exception.code, raised.exception.message)
            self.assertTrue(raised.exception.message)
        with self.assertRaises(VmStateError) as raised:
            self.vm.translate(0)
        self.assertIn("0x0 is not mapped in the kernel's address space", raised.exception.message)

    def test_resume_without_a_pause_is_an_invalid_state(self) -> None:
        self.vm.pause()  # a snapshot cannot run: the pause does nothing, but it is held
        self.vm.resume()
        with self.assertRaises(VmStateError) as raised:
            self.vm.resume()
        self.assertEqual(Status.INVALID_STATE, raised.exception.code)


class OpenErrorTests(unittest.TestCase):
    def test_a_missing_file_is_an_io_error(self) -> None:
        with self.assertRaises(VmStateError) as raised:
            Vm.open("/nonexistent/guest.mig")
        self.assertEqual(Status.IO, raised.exception.code)
        self.assertIn("/nonexistent/guest.mig", raised.exception.message)
        self.assertEqual("vmstate_open", raised.exception.function)

    def test_a_file_that_is_no_snapshot_is_a_format_error(self) -> None:
        with tempfile.NamedTemporaryFile(suffix=".mig") as f:
            f.write(b"this is not a snapshot\n" * 100)
            f.flush()
            with self.assertRaises(VmStateError) as raised:
                Vm.open(f.name)
            self.assertEqual(Status.FORMAT, raised.exception.code)

    def test_a_missing_qmp_socket_is_an_io_error(self) -> None:
        with self.assertRaises(VmStateError) as raised:
            Vm.attach("/nonexistent/qmp.sock", timeout=10)
        self.assertEqual(Status.IO, raised.exception.code)


class RawAbiTests(unittest.TestCase):
    """The C functions called directly: bad pointers and stale handles are error codes, never a crash."""

    def test_null_pointers_and_stale_handles(self) -> None:
        lib = vmstate.library()
        handle = ctypes.c_void_p()
        self.assertEqual(Status.INVALID_ARGUMENT, lib.vmstate_open(None, None, ctypes.byref(handle)))
        self.assertIn(b"path is NULL", lib.vmstate_last_error())
        self.assertEqual(Status.INVALID_ARGUMENT, lib.vmstate_open(os.fsencode(SNAPSHOT), None, None))

        self.assertEqual(Status.OK, lib.vmstate_open(os.fsencode(SNAPSHOT), None, ctypes.byref(handle)))
        got = ctypes.c_size_t()
        buffer = ctypes.create_string_buffer(16)
        self.assertEqual(Status.INVALID_ARGUMENT, lib.vmstate_read_physical(handle, 0, None, 16, ctypes.byref(got)))
        self.assertEqual(Status.INVALID_ARGUMENT, lib.vmstate_read_physical(handle, 0, buffer, 16, None))
        self.assertEqual(Status.INVALID_ARGUMENT, lib.vmstate_read_physical(handle, (1 << 64) - 8, buffer, 16, ctypes.byref(got)))
        self.assertEqual(Status.INVALID_ARGUMENT, lib.vmstate_read_virtual(handle, -1, 0, buffer, 16, ctypes.byref(got)))
        self.assertEqual(Status.INVALID_ARGUMENT, lib.vmstate_processes_json(handle, 0x80, ctypes.byref(ctypes.c_void_p()), ctypes.byref(got)))
        self.assertEqual(Status.OK, lib.vmstate_read_physical(handle, 0, buffer, 16, ctypes.byref(got)))
        self.assertEqual(16, got.value)

        self.assertEqual(Status.OK, lib.vmstate_close(handle))
        self.assertEqual(Status.INVALID_ARGUMENT, lib.vmstate_read_physical(handle, 0, buffer, 16, ctypes.byref(got)))
        self.assertIn(b"not an open vmstate handle", lib.vmstate_last_error())
        self.assertEqual(Status.INVALID_ARGUMENT, lib.vmstate_close(handle))
        self.assertEqual(Status.OK, lib.vmstate_close(None))
        self.assertEqual(Status.INVALID_ARGUMENT, lib.vmstate_read_physical(0x1234, 0, buffer, 16, ctypes.byref(got)))

    def test_options_with_a_wrong_size_are_refused(self) -> None:
        options = vmstate._OpenOptions(size=8)
        handle = ctypes.c_void_p()
        status = vmstate.library().vmstate_open(os.fsencode(SNAPSHOT), ctypes.byref(options), ctypes.byref(handle))
        self.assertEqual(Status.INVALID_ARGUMENT, status)
        self.assertIn(b"sizeof(vmstate_open_options)", vmstate.library().vmstate_last_error())

    def test_the_version_is_a_release_number(self) -> None:
        parts = vmstate.version().split(".")
        self.assertEqual(3, len(parts))
        self.assertTrue(all(p.isdigit() for p in parts))

    def test_a_closed_vm_refuses_calls(self) -> None:
        vm = Vm.open(SNAPSHOT)
        vm.close()
        vm.close()
        self.assertTrue(vm.closed)
        with self.assertRaises(ValueError):
            vm.read_physical(0, 1)


def jiffies_twice(vm: Vm) -> "tuple[int, int]":
    """The kernel's jiffies read twice, 300 ms apart: equal only while the guest is paused (HZ is at least 100)."""
    address = vm.symbol("jiffies")
    first = int.from_bytes(vm.read_virtual(address, 8), "little")
    time.sleep(0.3)
    return first, int.from_bytes(vm.read_virtual(address, 8), "little")


# Run by test_a_process_that_exits_without_closing_resumes_the_guest in a child process: attach paused, show that
# the guest is paused, then drop the handle without closing it (no __del__ either) and exit normally.
EXIT_WITHOUT_CLOSE = """
import sys, vmstate
from test_vmstate import jiffies_twice
vm = vmstate.Vm.attach(sys.argv[1], pause=True, timeout=60)
print(*jiffies_twice(vm))
vm._handle = None
"""


@unittest.skipUnless(QMP, "VMSTATE_TEST_QMP not set")
class LiveTests(unittest.TestCase):
    def test_attach_paused_lists_the_marker_and_close_resumes_the_guest(self) -> None:
        self.assertEqual("running", qmp_status(QMP or ""))
        marker = TRUTH["marker"]
        with Vm.attach(QMP or "", pause=True, timeout=60) as vm:
            first, second = jiffies_twice(vm)
            self.assertEqual(first, second, "jiffies moved: the guest is not paused")
            found = {p["pid"]: p for p in vm.processes()}
            self.assertEqual(next(p["comm"] for p in TRUTH["processes"] if p["pid"] == marker["pid"]), found[marker["pid"]]["comm"])
            value = marker["value"].encode()
            self.assertEqual(value, vm.read_virtual(marker["addr"], len(value), pid=marker["pid"]))
            self.assertEqual(TRUTH["banner"].encode(), vm.read_virtual(vm.symbol("linux_banner"), len(TRUTH["banner"])))
            with self.assertRaises(VmStateError) as raised:
                vm.pause()
            self.assertEqual(Status.INVALID_STATE, raised.exception.code)
        # Closed: the library resumed the guest it paused, and let go of the socket.
        self.assertEqual("running", qmp_status(QMP or ""))
        with Vm.attach(QMP or "", timeout=60) as vm:
            # An idle tickless guest may not update jiffies for a while: running means they move within 5 s.
            first = second = 0
            for _ in range(10):
                first, second = jiffies_twice(vm)
                if first < second:
                    break
                time.sleep(0.2)
            self.assertLess(first, second, "jiffies stood still for 5 s: the guest is not running")

    def test_a_process_that_exits_without_closing_resumes_the_guest(self) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        package = os.path.dirname(os.path.dirname(os.path.abspath(vmstate.__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, package]))
        child = subprocess.run([sys.executable, "-c", EXIT_WITHOUT_CLOSE, QMP or ""], env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(0, child.returncode, child.stderr)
        first, second = (int(v) for v in child.stdout.split())
        self.assertEqual(first, second, "jiffies moved: the child's guest was not paused")
        self.assertEqual("running", qmp_status(QMP or ""))


if __name__ == "__main__":
    unittest.main()
