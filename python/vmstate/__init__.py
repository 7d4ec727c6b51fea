"""VmState from Python: QEMU/KVM snapshots and running VMs, and the Linux guest inside them.

A thin ctypes wrapper over libvmstate.so, VmState's C interface (include/vmstate.h; eng/native.sh builds it). Only
the standard library is used: no compiled extension, nothing to install from PyPI.

    import vmstate

    with vmstate.Vm.open("guest.mig") as vm:
        for p in vm.processes():
            print(p["pid"], p["comm"])
        banner = vm.read_virtual(vm.symbol("linux_banner"), 128)   # the kernel's address space
        data = vm.read_virtual(0x5583a000, 64, pid=111)            # a process's address space

The library is found through the VMSTATE_LIB environment variable (the path of libvmstate.so), else next to this
package (python/vmstate/libvmstate.so), else where eng/native.sh puts it (artifacts/native/libvmstate.so).
"""

from __future__ import annotations

import ctypes
import enum
import json
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

__all__ = [
    "KERNEL",
    "Status",
    "Vm",
    "VmStateError",
    "library",
    "version",
]

#: The kernel's address space, for :meth:`Vm.read_virtual` and :meth:`Vm.translate` (``VMSTATE_KERNEL_SPACE``).
KERNEL = 0

_OPEN_ALLOW_RAW = 0x1
_OPEN_NO_CACHE = 0x2
_ATTACH_PAUSE = 0x1
_PROCESSES_THREADS = 0x1
_PROCESSES_NO_CMDLINE = 0x2

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


class Status(enum.IntEnum):
    """``vmstate_status``: what a call of the C library gave (the library's typed exceptions, one code each)."""

    OK = 0
    INVALID_ARGUMENT = 1
    FORMAT = 2
    GUEST_DATA = 3
    NOT_FOUND = 4
    IO = 5
    VM_GONE = 6
    QMP = 7
    TIMEOUT = 8
    UNMAPPED = 9
    INVALID_STATE = 10
    DATA = 11
    INTERNAL = 12


class VmStateError(Exception):
    """A call of libvmstate failed: :attr:`code` is the :class:`Status`, :attr:`message` the library's message."""

    def __init__(self, code: Union[Status, int], message: str, function: str) -> None:
        super().__init__(f"{function}: {message}")
        self.code = code
        self.message = message
        self.function = function

    def __repr__(self) -> str:
        return f"VmStateError({self.code!r}, {self.message!r}, {self.function!r})"


class _OpenOptions(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("snapshot", ctypes.c_char_p),
        ("system_map", ctypes.c_char_p),
        ("btf", ctypes.c_char_p),
    ]


class _AttachOptions(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("timeout_ms", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("system_map", ctypes.c_char_p),
        ("btf", ctypes.c_char_p),
    ]


_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def _candidates() -> List[Path]:
    env = os.environ.get("VMSTATE_LIB")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve().parent
    return [here / "libvmstate.so", here.parent.parent / "artifacts" / "native" / "libvmstate.so"]


def library() -> ctypes.CDLL:
    """The loaded libvmstate.so, with every function's prototype declared (for calls the :class:`Vm` class lacks)."""
    global _lib
    with _lock:
        if _lib is None:
            tried = _candidates()
            found = next((p for p in tried if p.is_file()), None)
            if found is None:
                raise OSError(
                    "libvmstate.so not found (tried "
                    + ", ".join(str(p) for p in tried)
                    + "); build it with eng/native.sh, or set VMSTATE_LIB to its path"
                )
            _lib = _declare(ctypes.CDLL(str(found)))
        return _lib


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    c_vm = ctypes.c_void_p
    c_vm_out = ctypes.POINTER(ctypes.c_void_p)
    c_size_out = ctypes.POINTER(ctypes.c_size_t)
    c_u64_out = ctypes.POINTER(ctypes.c_uint64)
    prototypes = {
        "vmstate_version": (ctypes.c_char_p, []),
        "vmstate_last_error": (ctypes.c_char_p, []),
        "vmstate_open": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_OpenOptions), c_vm_out]),
        "vmstate_attach": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_AttachOptions), c_vm_out]),
        "vmstate_pause": (ctypes.c_int, [c_vm]),
        "vmstate_resume": (ctypes.c_int, [c_vm]),
        "vmstate_close": (ctypes.c_int, [c_vm]),
        "vmstate_read_physical": (
            ctypes.c_int,
            [c_vm, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t, c_size_out],
        ),
        "vmstate_read_virtual": (
            ctypes.c_int,
            [c_vm, ctypes.c_int32, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t, c_size_out],
        ),
        "vmstate_translate": (ctypes.c_int, [c_vm, ctypes.c_int32, ctypes.c_uint64, c_u64_out]),
        "vmstate_symbol": (ctypes.c_int, [c_vm, ctypes.c_char_p, c_u64_out]),
        "vmstate_processes_json": (
            ctypes.c_int,
            [c_vm, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p), c_size_out],
        ),
        "vmstate_free": (None, [ctypes.c_void_p]),
    }
    for name, (restype, argtypes) in prototypes.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


def version() -> str:
    """The library's version, e.g. ``"0.1.0"``."""
    return library().vmstate_version().decode()


def _check(status: int, function: str) -> None:
    if status != Status.OK:
        message = library().vmstate_last_error().decode("utf-8", "replace")
        try:
            code: Union[Status, int] = Status(status)
        except ValueError:
            code = status
        raise VmStateError(code, message, function)


def _path(value: Optional[PathLike]) -> Optional[bytes]:
    return None if value is None else os.fsencode(value)


def _address(value: int) -> int:
    if not 0 <= value < 1 << 64:
        raise ValueError(f"address {value:#x} is not a 64-bit address")
    return value


def _size(value: int) -> int:
    if value < 0:
        raise ValueError(f"size {value} is negative")
    return value


def _pid(value: int) -> int:
    if not 0 <= value < 1 << 31:
        raise ValueError(f"pid {value} is out of range (0 is the kernel's address space)")
    return value


class Vm:
    """A VM from a snapshot file (:meth:`open`) or a running QEMU (:meth:`attach`); close it, or use ``with``."""

    def __init__(self, handle: int, origin: str) -> None:
        """Use :meth:`open` or :meth:`attach`."""
        self._handle: Optional[int] = handle
        self.origin = origin

    @classmethod
    def open(
        cls,
        path: PathLike,
        *,
        snapshot: Optional[str] = None,
        allow_raw: bool = False,
        cache: bool = True,
        system_map: Optional[PathLike] = None,
        btf: Optional[PathLike] = None,
    ) -> "Vm":
        """Opens a snapshot file of any kind VmState reads (migration stream, virsh save, qcow2, ELF core, raw).

        ``snapshot`` picks a qcow2 internal snapshot by id or name (default: the newest); ``allow_raw`` takes a file
        with no known magic as raw physical memory; ``cache=False`` is for one pass over all of RAM;
        ``system_map`` and ``btf`` give the kernel's symbols and types from files instead of guest memory.
        """
        options = _OpenOptions(
            size=ctypes.sizeof(_OpenOptions),
            flags=(_OPEN_ALLOW_RAW if allow_raw else 0) | (0 if cache else _OPEN_NO_CACHE),
            snapshot=None if snapshot is None else snapshot.encode(),
            system_map=_path(system_map),
            btf=_path(btf),
        )
        handle = ctypes.c_void_p()
        _check(library().vmstate_open(_path(path), ctypes.byref(options), ctypes.byref(handle)), "vmstate_open")
        return cls(handle.value or 0, os.fsdecode(path))

    @classmethod
    def attach(
        cls,
        qmp_socket: PathLike,
        *,
        pause: bool = False,
        timeout: Optional[float] = None,
        system_map: Optional[PathLike] = None,
        btf: Optional[PathLike] = None,
    ) -> "Vm":
        """Attaches to a running QEMU through a QMP UNIX socket (QEMU serves one client per socket).

        ``pause=True`` stops the guest until :meth:`resume` or :meth:`close` (a guest that was already paused stays
        paused); ``timeout`` (seconds) bounds the attach.
        """
        timeout_ms = 0 if timeout is None else max(1, int(timeout * 1000))
        options = _AttachOptions(
            size=ctypes.sizeof(_AttachOptions),
            flags=_ATTACH_PAUSE if pause else 0,
            timeout_ms=timeout_ms,
            reserved=0,
            system_map=_path(system_map),
            btf=_path(btf),
        )
        handle = ctypes.c_void_p()
        _check(
            library().vmstate_attach(_path(qmp_socket), ctypes.byref(options), ctypes.byref(handle)),
            "vmstate_attach",
        )
        return cls(handle.value or 0, os.fsdecode(qmp_socket))

    def __enter__(self) -> "Vm":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # A Vm dropped without close() still releases the file or the QMP connection (and resumes a paused guest).
        if getattr(self, "_handle", None) is not None and _lib is not None:
            try:
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else "open"
        return f"<vmstate.Vm {self.origin!r} {state}>"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._handle is None

    @property
    def handle(self) -> int:
        """The C handle (``vmstate_vm *``), for calls through :func:`library`."""
        if self._handle is None:
            raise ValueError("the Vm is closed")
        return self._handle

    def close(self) -> None:
        """Resumes a guest this Vm paused, then closes the file or the QMP connection. Closing twice is allowed."""
        handle, self._handle = self._handle, None
        if handle is not None:
            _check(library().vmstate_close(handle), "vmstate_close")

    def pause(self) -> None:
        """Pauses a running guest until :meth:`resume` or :meth:`close` (nothing happens on a snapshot)."""
        _check(library().vmstate_pause(self.handle), "vmstate_pause")

    def resume(self) -> None:
        """Ends the pause of :meth:`pause` or ``attach(pause=True)``."""
        _check(library().vmstate_resume(self.handle), "vmstate_resume")

    def read_physical(self, address: int, size: int) -> bytes:
        """Up to ``size`` bytes of guest-physical memory at ``address``; fewer where the VM's memory ends."""
        buffer = ctypes.create_string_buffer(_size(size))
        got = ctypes.c_size_t()
        _check(
            library().vmstate_read_physical(self.handle, _address(address), buffer, size, ctypes.byref(got)),
            "vmstate_read_physical",
        )
        return buffer.raw[: got.value]

    def read_virtual(self, address: int, size: int, pid: int = KERNEL) -> bytes:
        """Up to ``size`` bytes at virtual ``address`` in the address space of ``pid`` (:data:`KERNEL` for the
        kernel's); fewer where the mapping ends."""
        buffer = ctypes.create_string_buffer(_size(size))
        got = ctypes.c_size_t()
        _check(
            library().vmstate_read_virtual(self.handle, _pid(pid), _address(address), buffer, size, ctypes.byref(got)),
            "vmstate_read_virtual",
        )
        return buffer.raw[: got.value]

    def translate(self, address: int, pid: int = KERNEL) -> int:
        """The guest-physical address of virtual ``address`` in ``pid``'s address space (Status.UNMAPPED if none)."""
        physical = ctypes.c_uint64()
        _check(
            library().vmstate_translate(self.handle, _pid(pid), _address(address), ctypes.byref(physical)),
            "vmstate_translate",
        )
        return physical.value

    def symbol(self, expression: str) -> int:
        """The kernel-virtual address of ``"name"``, ``"name+0x10"`` or ``"name+16"``."""
        address = ctypes.c_uint64()
        _check(library().vmstate_symbol(self.handle, expression.encode(), ctypes.byref(address)), "vmstate_symbol")
        return address.value

    def processes_json(self, threads: bool = False, cmdline: bool = True) -> str:
        """The JSON document ``vmstate ps --json`` prints: ``{"release": ..., "processes": [...]}``."""
        flags = (_PROCESSES_THREADS if threads else 0) | (0 if cmdline else _PROCESSES_NO_CMDLINE)
        lib = library()
        data = ctypes.c_void_p()
        length = ctypes.c_size_t()
        _check(
            lib.vmstate_processes_json(self.handle, flags, ctypes.byref(data), ctypes.byref(length)),
            "vmstate_processes_json",
        )
        try:
            return ctypes.string_at(data, length.value).decode()
        finally:
            lib.vmstate_free(data)

    def processes(self, threads: bool = False, cmdline: bool = True) -> List[Dict[str, Any]]:
        """The processes (with ``threads``, every thread), as dicts with the keys of ``vmstate ps --json``: pid,
        tgid, ppid, uid, gid, state, comm, kernelThread, threads, startTimeNs, cmdline (None when not read), task."""
        document: Dict[str, Any] = json.loads(self.processes_json(threads, cmdline))
        processes: List[Dict[str, Any]] = document["processes"]
        return processes
