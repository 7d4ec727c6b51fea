using System.Buffers.Binary;

namespace VmState.Events;

/// <summary>
/// The x86-64 registers of one vCPU from a GDB <c>g</c> reply of QEMU's gdbstub, in the order of QEMU 7.2
/// <c>gdb-xml/i386-64bit.xml</c> and <c>target/i386/gdbstub.c</c>: rax rbx rcx rdx rsi rdi rbp rsp r8–r15 (8 bytes
/// each), rip (8), eflags (4), cs ss ds es fs gs (4 each), fs_base gs_base k_gs_base (8 each), cr0 cr2 cr3 cr4 cr8
/// (8 each), efer (8); the x87/SSE registers that follow are not decoded. All little-endian, two hex digits a byte.
/// </summary>
public sealed class X86GdbRegisters
{
    /// <summary>Bytes of the decoded prefix of the <c>g</c> reply.</summary>
    public const int DecodedLength = (16 * 8) + 8 + 4 + (6 * 4) + (3 * 8) + (5 * 8) + 8;

    private static readonly string[] GeneralNames = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
    private readonly ulong[] _general;

    private X86GdbRegisters(ulong[] general)
    {
        _general = general;
    }

    /// <summary>The 16 general-purpose registers in gdb's order (rax rbx rcx rdx rsi rdi rbp rsp r8–r15).</summary>
    public IReadOnlyList<ulong> General => _general;

    /// <summary>RAX.</summary>
    public ulong Rax => _general[0];

    /// <summary>RBX.</summary>
    public ulong Rbx => _general[1];

    /// <summary>RCX.</summary>
    public ulong Rcx => _general[2];

    /// <summary>RDX.</summary>
    public ulong Rdx => _general[3];

    /// <summary>RSI.</summary>
    public ulong Rsi => _general[4];

    /// <summary>RDI.</summary>
    public ulong Rdi => _general[5];

    /// <summary>RBP.</summary>
    public ulong Rbp => _general[6];

    /// <summary>RSP.</summary>
    public ulong Rsp => _general[7];

    /// <summary>R8.</summary>
    public ulong R8 => _general[8];

    /// <summary>R9.</summary>
    public ulong R9 => _general[9];

    /// <summary>RIP.</summary>
    public ulong Rip { get; private init; }

    /// <summary>RFLAGS (32 bits in the gdb layout).</summary>
    public uint Eflags { get; private init; }

    /// <summary>CS selector.</summary>
    public uint Cs { get; private init; }

    /// <summary>SS selector.</summary>
    public uint Ss { get; private init; }

    /// <summary>FS base.</summary>
    public ulong FsBase { get; private init; }

    /// <summary>GS base (the per-CPU area while the vCPU runs kernel code).</summary>
    public ulong GsBase { get; private init; }

    /// <summary>The KERNEL_GS_BASE MSR (swapped with GS base by <c>swapgs</c>).</summary>
    public ulong KernelGsBase { get; private init; }

    /// <summary>CR0.</summary>
    public ulong Cr0 { get; private init; }

    /// <summary>CR2.</summary>
    public ulong Cr2 { get; private init; }

    /// <summary>CR3: the page-table root of the address space the vCPU was in.</summary>
    public ulong Cr3 { get; private init; }

    /// <summary>CR4.</summary>
    public ulong Cr4 { get; private init; }

    /// <summary>EFER.</summary>
    public ulong Efer { get; private init; }

    /// <summary>True when the vCPU was in ring 0 (CS.RPL = 0).</summary>
    public bool IsKernelMode => (Cs & 3) == 0;

    /// <summary>
    /// The function argument <paramref name="index"/> (0–5) by the SysV x86-64 calling convention (RDI, RSI, RDX,
    /// RCX, R8, R9), valid at a function's first instruction.
    /// </summary>
    public ulong Argument(int index) => index switch
    {
        0 => Rdi,
        1 => Rsi,
        2 => Rdx,
        3 => Rcx,
        4 => R8,
        5 => R9,
        _ => throw new ArgumentOutOfRangeException(nameof(index), index, "only the six register arguments (0-5) are available"),
    };

    /// <summary>The name of general-purpose register <paramref name="index"/> (0–15) in gdb's order.</summary>
    public static string GeneralName(int index) => GeneralNames[index];

    /// <summary>
    /// Decodes a <c>g</c> reply. False when it is shorter than <see cref="DecodedLength"/> bytes or not hex (an
    /// <c>E..</c> error reply, for instance); never throws.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<char> hex, out X86GdbRegisters? registers)
    {
        registers = null;
        if (hex.Length < DecodedLength * 2)
        {
            return false;
        }

        Span<byte> raw = stackalloc byte[DecodedLength];
        if (Convert.FromHexString(hex[..(DecodedLength * 2)], raw, out _, out int written) != System.Buffers.OperationStatus.Done || written != DecodedLength)
        {
            return false;
        }

        var general = new ulong[16];
        for (int i = 0; i < 16; i++)
        {
            general[i] = BinaryPrimitives.ReadUInt64LittleEndian(raw[(i * 8)..]);
        }

        const int Rip = 128, Flags = 136, Segments = 140, Bases = 164, Control = 188, EferAt = 228;
        registers = new X86GdbRegisters(general)
        {
            Rip = BinaryPrimitives.ReadUInt64LittleEndian(raw[Rip..]),
            Eflags = BinaryPrimitives.ReadUInt32LittleEndian(raw[Flags..]),
            Cs = BinaryPrimitives.ReadUInt32LittleEndian(raw[Segments..]),
            Ss = BinaryPrimitives.ReadUInt32LittleEndian(raw[(Segments + 4)..]),
            FsBase = BinaryPrimitives.ReadUInt64LittleEndian(raw[Bases..]),
            GsBase = BinaryPrimitives.ReadUInt64LittleEndian(raw[(Bases + 8)..]),
            KernelGsBase = BinaryPrimitives.ReadUInt64LittleEndian(raw[(Bases + 16)..]),
            Cr0 = BinaryPrimitives.ReadUInt64LittleEndian(raw[Control..]),
            Cr2 = BinaryPrimitives.ReadUInt64LittleEndian(raw[(Control + 8)..]),
            Cr3 = BinaryPrimitives.ReadUInt64LittleEndian(raw[(Control + 16)..]),
            Cr4 = BinaryPrimitives.ReadUInt64LittleEndian(raw[(Control + 24)..]),
            Efer = BinaryPrimitives.ReadUInt64LittleEndian(raw[EferAt..]),
        };
        return true;
    }
}
