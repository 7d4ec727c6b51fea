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

    // user_regs_struct order (Linux arch/x86/include/asm/user_64.h) mapped to X86CpuState.Regs indexes:
    // r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi
    private static readonly int[] s_prstatusGeneral = [15, 14, 13, 12, 5, 3, 11, 10, 9, 8, 0, 1, 2, 6, 7];

    // QEMUCPUState order: rax rbx rcx rdx rsi rdi rsp rbp r8..r15
    private static readonly int[] s_qemuGeneral = [0, 3, 1, 2, 6, 7, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15];

    // QEMUCPUState segment order: cs ds es fs gs ss
    private static readonly int[] s_qemuSegments = [X86CpuState.Cs, X86CpuState.Ds, X86CpuState.Es, X86CpuState.Fs, X86CpuState.Gs, X86CpuState.Ss];

    /// <summary>Builds the NT_PRSTATUS note of a vCPU; pr_pid is cpu index + 1, as QEMU writes it.</summary>
    public static ElfNote Prstatus(X86CpuState cpu)
    {
        byte[] d = new byte[PrstatusSize];
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(PrstatusPidOffset), cpu.Index + 1);
        Span<byte> r = d.AsSpan(PrstatusRegsOffset);
        int q = 0;
        foreach (int gi in s_prstatusGeneral)
        {
            Put(r, q++, cpu.Regs[gi]);
        }

        Put(r, q++, 0); // orig_rax
        Put(r, q++, cpu.Rip);
        Put(r, q++, cpu.Segments[X86CpuState.Cs].Selector);
        Put(r, q++, cpu.Rflags);
        Put(r, q++, cpu.Regs[4]); // rsp
        Put(r, q++, cpu.Segments[X86CpuState.Ss].Selector);
        Put(r, q++, cpu.Segments[X86CpuState.Fs].Base);
        Put(r, q++, cpu.Segments[X86CpuState.Gs].Base);
        Put(r, q++, cpu.Segments[X86CpuState.Ds].Selector);
        Put(r, q++, cpu.Segments[X86CpuState.Es].Selector);
        Put(r, q++, cpu.Segments[X86CpuState.Fs].Selector);
        Put(r, q, cpu.Segments[X86CpuState.Gs].Selector);
        return new ElfNote("CORE", ElfNote.NtPrstatus, d);
    }

    /// <summary>Builds the "QEMU" note (QEMUCPUState v1) of a vCPU.</summary>
    public static ElfNote QemuCpuState(X86CpuState cpu)
    {
        byte[] d = new byte[QemuCpuStateSize];
        Span<byte> s = d;
        BinaryPrimitives.WriteUInt32LittleEndian(s, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(s[4..], QemuCpuStateSize);
        int pos = 8;
        foreach (int gi in s_qemuGeneral)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(s[pos..], cpu.Regs[gi]);
            pos += 8;
        }

        BinaryPrimitives.WriteUInt64LittleEndian(s[pos..], cpu.Rip);
        BinaryPrimitives.WriteUInt64LittleEndian(s[(pos + 8)..], cpu.Rflags);
        pos += 16;
        foreach (int si in s_qemuSegments)
        {
            pos = PutSegment(s, pos, cpu.Segments[si]);
        }

        pos = PutSegment(s, pos, cpu.Ldt);
        pos = PutSegment(s, pos, cpu.Tr);
        pos = PutSegment(s, pos, cpu.Gdt);
        pos = PutSegment(s, pos, cpu.Idt);
        ulong[] cr = [cpu.Cr0, 0, cpu.Cr2, cpu.Cr3, cpu.Cr4];
        foreach (ulong c in cr)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(s[pos..], c);
            pos += 8;
        }

        BinaryPrimitives.WriteUInt64LittleEndian(s[pos..], cpu.KernelGsBase);
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
        int q = 0;
        foreach (int gi in s_prstatusGeneral)
        {
            cpu.Regs[gi] = Get(r, q++);
        }

        q++; // orig_rax
        cpu.Rip = Get(r, q++);
        ulong cs = Get(r, q++);
        cpu.Rflags = Get(r, q++);
        cpu.Regs[4] = Get(r, q++);
        ulong ss = Get(r, q++);
        ulong fsBase = Get(r, q++);
        ulong gsBase = Get(r, q++);
        ulong ds = Get(r, q++);
        ulong es = Get(r, q++);
        ulong fs = Get(r, q++);
        ulong gs = Get(r, q);
        cpu.Segments[X86CpuState.Cs] = cpu.Segments[X86CpuState.Cs] with { Selector = (uint)cs };
        cpu.Segments[X86CpuState.Ss] = cpu.Segments[X86CpuState.Ss] with { Selector = (uint)ss };
        cpu.Segments[X86CpuState.Ds] = cpu.Segments[X86CpuState.Ds] with { Selector = (uint)ds };
        cpu.Segments[X86CpuState.Es] = cpu.Segments[X86CpuState.Es] with { Selector = (uint)es };
        cpu.Segments[X86CpuState.Fs] = cpu.Segments[X86CpuState.Fs] with { Selector = (uint)fs, Base = fsBase };
        cpu.Segments[X86CpuState.Gs] = cpu.Segments[X86CpuState.Gs] with { Selector = (uint)gs, Base = gsBase };
    }

    /// <summary>Reads a "QEMU" note (QEMUCPUState) into <paramref name="cpu"/>.</summary>
    public static void ReadQemuCpuState(ReadOnlySpan<byte> d, X86CpuState cpu)
    {
        if (d.Length < 432)
        {
            throw new FormatException($"QEMU CPU note of {d.Length} bytes (expected at least 432)");
        }

        uint version = BinaryPrimitives.ReadUInt32LittleEndian(d);
        if (version != 1)
        {
            throw new FormatException($"QEMU CPU note version {version} (expected 1)");
        }

        int pos = 8;
        foreach (int gi in s_qemuGeneral)
        {
            cpu.Regs[gi] = BinaryPrimitives.ReadUInt64LittleEndian(d[pos..]);
            pos += 8;
        }

        cpu.Rip = BinaryPrimitives.ReadUInt64LittleEndian(d[pos..]);
        cpu.Rflags = BinaryPrimitives.ReadUInt64LittleEndian(d[(pos + 8)..]);
        pos += 16;
        foreach (int si in s_qemuSegments)
        {
            cpu.Segments[si] = GetSegment(d, ref pos);
        }

        cpu.Ldt = GetSegment(d, ref pos);
        cpu.Tr = GetSegment(d, ref pos);
        cpu.Gdt = GetSegment(d, ref pos);
        cpu.Idt = GetSegment(d, ref pos);
        cpu.Cr0 = BinaryPrimitives.ReadUInt64LittleEndian(d[pos..]);
        cpu.Cr2 = BinaryPrimitives.ReadUInt64LittleEndian(d[(pos + 16)..]);
        cpu.Cr3 = BinaryPrimitives.ReadUInt64LittleEndian(d[(pos + 24)..]);
        cpu.Cr4 = BinaryPrimitives.ReadUInt64LittleEndian(d[(pos + 32)..]);
        pos += 40;
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(d[4..]);
        if (size >= pos + 8 && d.Length >= pos + 8)
        {
            cpu.KernelGsBase = BinaryPrimitives.ReadUInt64LittleEndian(d[pos..]);
        }
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
