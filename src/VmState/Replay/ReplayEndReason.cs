namespace VmState.Replay;

/// <summary>How a recording ended.</summary>
public enum ReplayEndReason
{
    /// <summary>The user stopped it (Ctrl-C, or cancellation): VmState stopped the VM, read the instruction count and quit QEMU.</summary>
    Interrupted,

    /// <summary>The guest powered off (or reset with -no-reboot); the instruction count is where it did.</summary>
    GuestShutdown,

    /// <summary>QEMU exited by itself; the instruction count is the last one read before (every half second).</summary>
    QemuExited,
}
