using System.Globalization;

namespace VmState.Arch.Arm64;

/// <summary>
/// The architectural state of one AArch64 vCPU as QEMU 7.2 saves it (<c>target/arm/machine.c</c>, vmsd "cpu"
/// v22): the general registers, PC, PSTATE, the banked SP/ELR/SPSR, the system registers of the cpreg list by
/// KVM-style id, and the FP/SIMD registers of the "vfp" subsection.
/// </summary>
public sealed class Arm64CpuState : IVcpuState
{
    private readonly Dictionary<ulong, ulong> _systemRegisters = new();
    private readonly List<ulong> _systemRegisterOrder = new();

    /// <summary>QEMU's cpu_index (the instance id of the "cpu" section).</summary>
    public int Index { get; set; }

    /// <summary>x0–x30.</summary>
    public ulong[] X { get; } = new ulong[31];

    /// <summary>The stack pointer in use (QEMU keeps it in xregs[31]: SP_EL0 or SP_ELx as PSTATE.SP selects).</summary>
    public ulong Sp { get; set; }

    /// <summary>The program counter.</summary>
    public ulong Pc { get; set; }

    /// <summary>PSTATE as QEMU saves it in the "cpsr" field of an AArch64 vCPU (SPSR layout: NZCV, DAIF, EL, SP).</summary>
    public uint Pstate { get; set; }

    /// <summary>SP_EL0..SP_EL3 (the banked stack pointers; the one in use may be newer in <see cref="Sp"/>).</summary>
    public ulong[] SpEl { get; } = new ulong[4];

    /// <summary>ELR_EL0..ELR_EL3 (index 0 unused by the architecture).</summary>
    public ulong[] ElrEl { get; } = new ulong[4];

    /// <summary>QEMU's banked_spsr[8]: SPSR_EL1 is index 1, SPSR_EL2 index 6, SPSR_EL3 index 7.</summary>
    public ulong[] BankedSpsr { get; } = new ulong[8];

    /// <summary>V0–V31 (the low 128 bits of the SVE Z registers), 16 bytes each, low doubleword first.</summary>
    public byte[] V { get; } = new byte[32 * 16];

    /// <summary>True when the "vfp" subsection was present (the FP/SIMD registers are known).</summary>
    public bool HasFpSimd { get; set; }

    /// <summary>FPSR.</summary>
    public uint Fpsr { get; set; }

    /// <summary>FPCR.</summary>
    public uint Fpcr { get; set; }

    /// <inheritdoc />
    public bool? Halted { get; set; }

    /// <summary>The exception level, PSTATE.EL (bits 3:2).</summary>
    public int ExceptionLevel => (int)((Pstate >> 2) & 3);

    /// <summary>True when PSTATE.nRW (bit 4) says the vCPU is in AArch32 state.</summary>
    public bool Aarch32 => (Pstate & 0x10) != 0;

    /// <summary>The system registers saved, by KVM-style id, in the stream's order.</summary>
    public IReadOnlyList<ulong> SystemRegisterIds => _systemRegisterOrder;

    /// <summary>TTBR0_EL1 (0 when not saved).</summary>
    public ulong Ttbr0El1 => SystemRegister(Arm64SystemRegisters.Ttbr0El1) ?? 0;

    /// <summary>TTBR1_EL1 (0 when not saved).</summary>
    public ulong Ttbr1El1 => SystemRegister(Arm64SystemRegisters.Ttbr1El1) ?? 0;

    /// <summary>TCR_EL1 (0 when not saved).</summary>
    public ulong TcrEl1 => SystemRegister(Arm64SystemRegisters.TcrEl1) ?? 0;

    /// <summary>SCTLR_EL1 (0 when not saved).</summary>
    public ulong SctlrEl1 => SystemRegister(Arm64SystemRegisters.SctlrEl1) ?? 0;

    /// <summary>TPIDR_EL1 (0 when not saved): Linux's per-CPU offset of this CPU.</summary>
    public ulong TpidrEl1 => SystemRegister(Arm64SystemRegisters.TpidrEl1) ?? 0;

    /// <summary>True when the stage 1 MMU of EL1&amp;0 is on (SCTLR_EL1.M).</summary>
    public bool MmuEnabled => (SctlrEl1 & 1) != 0;

    /// <inheritdoc />
    public IArchitecture Architecture => Arm64Architecture.Instance;

    /// <inheritdoc />
    public ulong ProgramCounter => Pc;

    /// <inheritdoc />
    public ulong StackPointer => Sp;

    /// <summary>Sets a system register by KVM-style id (a later value for the same id replaces the earlier one).</summary>
    public void SetSystemRegister(ulong kvmId, ulong value)
    {
        if (!_systemRegisters.ContainsKey(kvmId))
        {
            _systemRegisterOrder.Add(kvmId);
        }

        _systemRegisters[kvmId] = value;
    }

    /// <summary>A system register by KVM-style id, or null when the vCPU's state does not carry it.</summary>
    public ulong? SystemRegister(ulong kvmId) => _systemRegisters.TryGetValue(kvmId, out ulong v) ? v : null;

    /// <summary>A named system register, or null when the vCPU's state does not carry it.</summary>
    public ulong? SystemRegister(Arm64SystemRegister register)
    {
        ArgumentNullException.ThrowIfNull(register);
        return SystemRegister(register.KvmId);
    }

    /// <summary>
    /// A register by name (case-insensitive): x0–x30, sp, pc, cpsr/pstate, fpsr, fpcr, sp_el0–3, elr_el1–3,
    /// spsr_el1, or a system register by its name (TTBR1_EL1) or generic name (S3_0_C2_C0_1); null otherwise.
    /// </summary>
    public ulong? GetRegister(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string n = name.ToLowerInvariant();
        if (n.Length is 2 or 3 && n[0] == 'x' && int.TryParse(n.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out int xi) && xi <= 30)
        {
            return X[xi];
        }

        switch (n)
        {
            case "sp": return Sp;
            case "pc": return Pc;
            case "cpsr" or "pstate": return Pstate;
            case "fpsr": return Fpsr;
            case "fpcr": return Fpcr;
            case "lr": return X[30];
            case "fp": return X[29];
            case "spsr_el1": return BankedSpsr[1];
            case "spsr_el2": return BankedSpsr[6];
            case "spsr_el3": return BankedSpsr[7];
        }

        if (n.Length == 6 && n.StartsWith("sp_el", StringComparison.Ordinal) && n[5] is >= '0' and <= '3')
        {
            return SpEl[n[5] - '0'];
        }

        if (n.Length == 7 && n.StartsWith("elr_el", StringComparison.Ordinal) && n[6] is >= '1' and <= '3')
        {
            return ElrEl[n[6] - '0'];
        }

        if (Arm64SystemRegisters.FindByName(name) is { } sys)
        {
            return SystemRegister(sys);
        }

        foreach (ulong id in _systemRegisterOrder)
        {
            if (string.Equals(Arm64SystemRegister.GenericName(id), name, StringComparison.OrdinalIgnoreCase))
            {
                return _systemRegisters[id];
            }
        }

        return null;
    }

    /// <summary>"EL1h", "EL0t", ... from PSTATE (h: SP_ELx in use, t: SP_EL0), or "AArch32" in AArch32 state.</summary>
    public string DescribeMode() => Aarch32 ? "AArch32" : $"EL{ExceptionLevel}{((Pstate & 1) != 0 ? 'h' : 't')}";
}
