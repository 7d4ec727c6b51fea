using VmState.Editing;

namespace VmState.Gdb;

/// <summary>
/// What the GDB server needs from a guest architecture: the register file in gdb's numbering with its target
/// description, each vCPU's registers as gdb's packets carry them, the writes the snapshot editor can take, and
/// virtual memory through a vCPU's page tables. <see cref="GdbTarget"/> and <see cref="GdbCommandDispatcher"/> work
/// only through it; <see cref="GdbTargetArchitectures.For"/> picks the one a machine needs.
/// </summary>
internal interface IGdbTargetArchitecture
{
    /// <summary>The registers in gdb's numbering (the order of the 'g' packet).</summary>
    IReadOnlyList<GdbRegister> Registers { get; }

    /// <summary>The target.xml document.</summary>
    string TargetXml { get; }

    /// <summary>Number of vCPUs (threads).</summary>
    int CpuCount { get; }

    /// <summary>QEMU's cpu_index of vCPU <paramref name="cpu"/> (0-based position).</summary>
    int CpuIndex(int cpu);

    /// <summary>What gdb shows for thread <paramref name="cpu"/>.</summary>
    string DescribeThread(int cpu);

    /// <summary>Register <paramref name="n"/> of vCPU <paramref name="cpu"/>, in target byte order, the register's size.</summary>
    byte[] ReadRegister(int cpu, int n);

    /// <summary>Why register <paramref name="n"/> cannot be written, or null when it can.</summary>
    string? WriteRefusal(int n);

    /// <summary>Writes register <paramref name="n"/> of vCPU <paramref name="cpu"/> through <paramref name="editor"/> and into the state gdb reads back.</summary>
    /// <exception cref="InvalidEditException">The editor refuses the register.</exception>
    void WriteRegister(SnapshotEditor editor, int cpu, int n, ReadOnlySpan<byte> value);

    /// <summary>Reads virtual memory (through the overlay) with vCPU <paramref name="cpu"/>'s page tables; the bytes read before the first unmapped one.</summary>
    int ReadVirtual(int cpu, ulong address, Span<byte> destination);

    /// <summary>Writes virtual memory through vCPU <paramref name="cpu"/>'s page tables into <paramref name="editor"/>'s overlay.</summary>
    /// <exception cref="InvalidEditException">A byte is not mapped or not RAM.</exception>
    void WriteVirtual(SnapshotEditor editor, int cpu, ulong address, byte[] data);

    /// <summary>Forgets cached translations (page tables or table bases may have changed).</summary>
    void Invalidate();
}
