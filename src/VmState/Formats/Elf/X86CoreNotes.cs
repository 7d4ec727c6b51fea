using System.Buffers.Binary;
using VmState.Arch.X86;

namespace VmState.Formats.Elf;

/// <summary>
/// The per-vCPU notes of an x86-64 core as QEMU's dump-guest-memory writes them (QEMU 7.2
/// <c>target/i386/arch_dump.c</c>): NT_PRSTATUS ("CORE", 336 bytes, the registers gdb shows) and the "QEMU" note
/// (QEMUCPUState v1, 440 bytes: control registers, segment bases, GDT/IDT, which crash uses).
/// </summary>
public static class X86CoreNotes
{
    /// <summary>Size of x86-64 <c>struct elf_prstatus</c>.</summary>
    public const int PrstatusSize = 336;

    /// <summary>Offset of <c>pr_pid</c>.</summary>
    public const int PrstatusPidOffset = 32;

    /// <summary>Offset of <c>pr_reg</c> (<c>user_regs_struct</c>, 27 quadwords).</summary>
    public const int PrstatusRegsOffset = 112;

    /// <summary>Size of QEMUCPUState version 1 with kernel_gs_base.</summary>
    public const int QemuCpuStateSize = 440;

    // QEMUCPUState before kernel_gs_base was added (QEMU 7.2 target/i386/arch_dump.c): every reader needs this much.
    private const int QemuCpuStateV1Size = 432;

    // version, size, 16 general registers, rip, rflags: then cs ds es fs gs ss ldt tr gdt idt, 24 bytes each.
    private const int QemuSegmentsOffset = 8 + (18 * 8);

    // QEMUCPUState segment order: cs ds es fs gs ss
    private static readonly int[] s_qemuSegments = [X86CpuState.Cs, X86CpuState.Ds, X86CpuState.Es, X86CpuState.Fs, X86CpuState.Gs, X86CpuState.Ss];

    /// <summary>Builds the NT_PRSTATUS note of a vCPU; pr_pid is cpu index + 1, as QEMU writes it.</summary>
    public static ElfNote Prstatus(X86CpuState cpu)
    {
        byte[] d = new byte[PrstatusSize];
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(PrstatusPidOffset), cpu.Index + 1);
        Span<byte> r = d.AsSpan(PrstatusRegsOffset);
        for (int q = 0; q < X86Registers.UserRegsCount; q++)
        {
            Put(r, q, X86Registers.UserRegs[q].Get(cpu));
        }

        return new ElfNote("CORE", ElfNote.NtPrstatus, d);
    }

    /// <summary>Builds the "QEMU" note (QEMUCPUState v1) of a vCPU.</summary>
    public static ElfNote QemuCpuState(X86CpuState cpu)
    {
        byte[] d = new byte[QemuCpuStateSize];
        Span<byte> s = d;
        BinaryPrimitives.WriteUInt32LittleEndian(s, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(s[4..], QemuCpuStateSize);
        foreach (X86Register reg in X86Registers.All)
        {
            if (reg.QemuNoteOffset >= 0)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(s[reg.QemuNoteOffset..], reg.Get(cpu));
            }
        }

        // The registers before the segments are in the table; the segments follow as whole QEMUCPUSegments.
        int pos = QemuSegmentsOffset;
        foreach (int si in s_qemuSegments)
        {
            pos = PutSegment(s, pos, cpu.Segments[si]);
        }

        pos = PutSegment(s, pos, cpu.Ldt);
        pos = PutSegment(s, pos, cpu.Tr);
        pos = PutSegment(s, pos, cpu.Gdt);
        pos = PutSegment(s, pos, cpu.Idt);
        return new ElfNote("QEMU", 0, d);
    }

    /// <summary>Reads the registers of an NT_PRSTATUS note into <paramref name="cpu"/>.</summary>
    public static void ReadPrstatus(ReadOnlySpan<byte> d, X86CpuState cpu)
    {
        if (d.Length < PrstatusRegsOffset + (27 * 8))
        {
            throw new FormatException($"NT_PRSTATUS of {d.Length} bytes (expected {PrstatusSize} for x86-64)");
        }

        cpu.Index = BinaryPrimitives.ReadInt32LittleEndian(d[PrstatusPidOffset..]) - 1;
        ReadOnlySpan<byte> r = d[PrstatusRegsOffset..];
        for (int q = 0; q < X86Registers.UserRegsCount; q++)
        {
            X86Register reg = X86Registers.UserRegs[q];
            if (reg.InModel)
            {
                reg.Set(cpu, Get(r, q));
            }
        }
    }

    /// <summary>Reads a "QEMU" note (QEMUCPUState) into <paramref name="cpu"/>.</summary>
    public static void ReadQemuCpuState(ReadOnlySpan<byte> d, X86CpuState cpu)
    {
        if (d.Length < QemuCpuStateV1Size)
        {
            throw new FormatException($"QEMU CPU note of {d.Length} bytes (expected at least {QemuCpuStateV1Size})");
        }

        uint version = BinaryPrimitives.ReadUInt32LittleEndian(d);
        if (version != 1)
        {
            throw new FormatException($"QEMU CPU note version {version} (expected 1)");
        }

        // kernel_gs_base came after the first QEMUCPUState; a note whose size stops before a register does not carry it.
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(d[4..]);
        foreach (X86Register reg in X86Registers.All)
        {
            int at = reg.QemuNoteOffset;
            if (at >= 0 && (at + 8 <= QemuCpuStateV1Size || (size >= at + 8 && d.Length >= at + 8)))
            {
                reg.Set(cpu, BinaryPrimitives.ReadUInt64LittleEndian(d[at..]));
            }
        }

        int pos = QemuSegmentsOffset;
        foreach (int si in s_qemuSegments)
        {
            cpu.Segments[si] = GetSegment(d, ref pos);
        }

        cpu.Ldt = GetSegment(d, ref pos);
        cpu.Tr = GetSegment(d, ref pos);
        cpu.Gdt = GetSegment(d, ref pos);
        cpu.Idt = GetSegment(d, ref pos);
    }

    private static int PutSegment(Span<byte> s, int pos, X86Segment seg)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(s[pos..], seg.Selector);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(pos + 4)..], seg.Limit);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(pos + 8)..], seg.Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(s[(pos + 16)..], seg.Base);
        return pos + 24;
    }

    private static X86Segment GetSegment(ReadOnlySpan<byte> d, ref int pos)
    {
        var seg = new X86Segment(
            BinaryPrimitives.ReadUInt32LittleEndian(d[pos..]),
            BinaryPrimitives.ReadUInt64LittleEndian(d[(pos + 16)..]),
            BinaryPrimitives.ReadUInt32LittleEndian(d[(pos + 4)..]),
            BinaryPrimitives.ReadUInt32LittleEndian(d[(pos + 8)..]));
        pos += 24;
        return seg;
    }

    private static void Put(Span<byte> r, int index, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(r[(index * 8)..], value);

    private static ulong Get(ReadOnlySpan<byte> r, int index) => BinaryPrimitives.ReadUInt64LittleEndian(r[(index * 8)..]);
}
