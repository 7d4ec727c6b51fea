namespace VmState.Native;

/// <summary>
/// The status every C function returns (<c>vmstate_status</c> in include/vmstate.h, same values). The error codes
/// follow the library's typed exceptions (<see cref="NativeErrors.StatusOf"/>).
/// </summary>
internal enum VmStateStatus
{
    /// <summary>Success.</summary>
    Ok = 0,

    /// <summary>A NULL or unknown handle, a NULL pointer, a bad length, flag or pid; an <see cref="ArgumentException"/>.</summary>
    InvalidArgument = 1,

    /// <summary>A file that is not a supported snapshot or is malformed (<see cref="IO.VmStateFormatException"/>).</summary>
    Format = 2,

    /// <summary>Guest kernel data that makes no sense (<see cref="Linux.KernelDataException"/>).</summary>
    GuestData = 3,

    /// <summary>A snapshot, symbol, type or pid that is not there (<see cref="VmStateNotFoundException"/>).</summary>
    NotFound = 4,

    /// <summary>Host I/O: no such file, permission denied, an unreachable socket (<see cref="IOException"/>).</summary>
    IO = 5,

    /// <summary>QEMU exited or its QMP socket closed (<see cref="LiveVmGoneException"/>).</summary>
    VmGone = 6,

    /// <summary>QEMU refused a command (<see cref="Live.QmpException"/>).</summary>
    Qmp = 7,

    /// <summary>The attach timeout passed, or QEMU did not answer in time (<see cref="TimeoutException"/>).</summary>
    Timeout = 8,

    /// <summary><c>vmstate_translate</c>: the virtual address is not mapped.</summary>
    Unmapped = 9,

    /// <summary>The call does not fit the VM's state (<see cref="InvalidOperationException"/>).</summary>
    InvalidState = 10,

    /// <summary>Another <see cref="VmStateException"/>: bad data of a kind not listed above.</summary>
    Data = 11,

    /// <summary>Any other exception: a bug in VmState.</summary>
    Internal = 12,
}
