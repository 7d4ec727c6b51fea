namespace VmState.Integration.Harness;

/// <summary>How to start the fixture guest. Source and -incoming guests must use identical options.</summary>
public sealed record QemuGuestOptions
{
    public int MemoryMiB { get; init; } = 512;

    public int Cpus { get; init; } = 2;

    public string CpuModel { get; init; } = "qemu64";

    public string Machine { get; init; } = "pc";

    public string ExtraKernelArgs { get; init; } = string.Empty;

    public string VirtioMac { get; init; } = "52:54:00:12:34:56";

    public string E1000Mac { get; init; } = "52:54:00:ab:cd:ef";

    /// <summary>A qcow2 image to attach as an IDE disk (needed for savevm/loadvm).</summary>
    public string? DiskPath { get; init; }

    /// <summary>Put guest RAM on a shared file (memory-backend-file share=on, id pc.ram) at this path, e.g. under /dev/shm.</summary>
    public string? SharedMemoryPath { get; init; }

    /// <summary>Start QEMU's gdbstub on 127.0.0.1 at this port.</summary>
    public int? GdbPort { get; init; }

    /// <summary>A migration stream to resume from (-incoming "exec:cat FILE"); READY is then not awaited.</summary>
    public string? Incoming { get; init; }

    /// <summary>A savevm tag to resume from (-loadvm).</summary>
    public string? LoadVm { get; init; }

    /// <summary>
    /// More QEMU arguments, appended as they are: memory backends (-object memory-backend-*), -numa nodes,
    /// -machine properties such as memory-backend=ID.
    /// </summary>
    public IReadOnlyList<string> ExtraArgs { get; init; } = [];

    /// <summary>
    /// Start the arm64 guest (eng/fixture.sh --arch arm64) under qemu-system-aarch64 -M virt instead of the x86 one;
    /// <see cref="Machine"/> and <see cref="CpuModel"/> then default to "virt" and "max".
    /// </summary>
    public bool Arm64 { get; init; }

    /// <summary>The guest kernel series (<see cref="GuestFixture.KernelSeries"/>, e.g. "6.12"); null: the default fixture.</summary>
    public string? KernelSeries { get; init; }
}
