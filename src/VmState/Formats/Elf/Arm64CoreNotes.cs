using System.Buffers.Binary;
using VmState.Arch.Arm64;

namespace VmState.Formats.Elf;

/// <summary>
/// The per-vCPU notes of an AArch64 core as QEMU's dump-guest-memory writes them (QEMU 7.2
/// <c>target/arm/arch_dump.c</c>) and Linux defines them (<c>arch/arm64/include/uapi/asm/ptrace.h</c>):
/// NT_PRSTATUS ("CORE", 392 bytes, pr_reg = <c>struct user_pt_regs</c>: x0–x30, sp, pc, pstate) and NT_FPREGSET
/// ("CORE", 528 bytes, <c>struct user_fpsimd_state</c>: v0–v31, fpsr, fpcr).
/// </summary>
public static class Arm64CoreNotes
{
    /// <summary>Size of AArch64 <c>struct elf_prstatus</c>.</summary>
    public const int PrstatusSize = 392;

    /// <summary>Offset of <c>pr_pid</c>.</summary>
    public const int PrstatusPidOffset = 32;

    /// <summary>Offset of <c>pr_reg</c> (<c>struct user_pt_regs</c>, 34 doublewords).</summary>
    public const int PrstatusRegsOffset = 112;

    /// <summary>Offset of <c>pr_fpvalid</c>.</summary>
    public const int PrstatusFpvalidOffset = PrstatusRegsOffset + (UserPtRegsCount * 8);

    /// <summary>Doublewords in <c>struct user_pt_regs</c>: regs[31], sp, pc, pstate.</summary>
    public const int UserPtRegsCount = 34;

    /// <summary>Size of <c>struct user_fpsimd_state</c>.</summary>
    public const int FpregsetSize = 528;

    /// <summary>n_type of NT_FPREGSET.</summary>
    public const uint NtFpregset = 2;

    /// <summary>Builds the NT_PRSTATUS note of a vCPU; pr_pid is cpu index + 1, as QEMU writes it.</summary>
    public static ElfNote Prstatus(Arm64CpuState cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        byte[] d = new byte[PrstatusSize];
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(PrstatusPidOffset), cpu.Index + 1);
        Span<byte> r = d.AsSpan(PrstatusRegsOffset);
        for (int i = 0; i < 31; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(r[(i * 8)..], cpu.X[i]);
        }

        BinaryPrimitives.WriteUInt64LittleEndian(r[(31 * 8)..], cpu.Sp);
        BinaryPrimitives.WriteUInt64LittleEndian(r[(32 * 8)..], cpu.Pc);
        BinaryPrimitives.WriteUInt64LittleEndian(r[(33 * 8)..], cpu.Pstate);

        // pr_fpvalid follows pr_reg: set when an NT_FPREGSET note follows, as QEMU sets it.
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(PrstatusFpvalidOffset), cpu.HasFpSimd ? 1 : 0);
        return new ElfNote("CORE", ElfNote.NtPrstatus, d);
    }

    /// <summary>Builds the NT_FPREGSET note of a vCPU (its V registers, FPSR and FPCR).</summary>
    public static ElfNote Fpregset(Arm64CpuState cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        byte[] d = new byte[FpregsetSize];
        cpu.V.CopyTo(d, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(512), cpu.Fpsr);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(516), cpu.Fpcr);
        return new ElfNote("CORE", NtFpregset, d);
    }

    /// <summary>Reads the registers of an NT_PRSTATUS note into <paramref name="cpu"/>.</summary>
    /// <exception cref="IO.VmStateFormatException">The note is shorter than an AArch64 prstatus.</exception>
    public static void ReadPrstatus(ReadOnlySpan<byte> d, Arm64CpuState cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        if (d.Length < PrstatusRegsOffset + (UserPtRegsCount * 8))
        {
            throw new IO.VmStateFormatException(0, "NT_PRSTATUS note", $"expected an AArch64 prstatus of at least {PrstatusRegsOffset + (UserPtRegsCount * 8)} bytes, found {d.Length}");
        }

        ReadOnlySpan<byte> r = d[PrstatusRegsOffset..];
        for (int i = 0; i < 31; i++)
        {
            cpu.X[i] = BinaryPrimitives.ReadUInt64LittleEndian(r[(i * 8)..]);
        }

        cpu.Sp = BinaryPrimitives.ReadUInt64LittleEndian(r[(31 * 8)..]);
        cpu.Pc = BinaryPrimitives.ReadUInt64LittleEndian(r[(32 * 8)..]);
        cpu.Pstate = (uint)BinaryPrimitives.ReadUInt64LittleEndian(r[(33 * 8)..]);
    }
}
