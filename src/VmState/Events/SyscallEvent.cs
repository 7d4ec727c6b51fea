namespace VmState.Events;

/// <summary>
/// One system call entered by a task of the guest, seen at the kernel's x86-64 system call entry (the VM stopped):
/// its number, its name from the guest kernel's own table, and the six argument registers the task passed.
/// </summary>
public sealed class SyscallEvent
{
    /// <summary>The breakpoint hit behind the event: time, vCPU, registers, and the calling task (pid, tgid, comm).</summary>
    public required BreakpointHit Hit { get; init; }

    /// <summary>
    /// The system call number as the task passed it in RAX (x32 calls have bit 30 set; -1 and other numbers past the
    /// table are passed on by the kernel, which answers <c>-ENOSYS</c>).
    /// </summary>
    public required long Number { get; init; }

    /// <summary>The name (<c>getppid</c>), or null for a number the kernel has no system call for (or x32).</summary>
    public string? Name { get; init; }

    /// <summary>
    /// The six argument registers of the call (RDI, RSI, RDX, R10, R8, R9, from the task's saved <c>pt_regs</c>); how
    /// many the call uses depends on the call. Empty when the saved registers could not be read.
    /// </summary>
    public required IReadOnlyList<ulong> Arguments { get; init; }
}
