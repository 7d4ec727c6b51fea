namespace VmState.Arch.Arm64;

/// <summary>
/// The AArch64 system registers VmState names (Arm ARM, "AArch64 System Register Descriptions"; encodings as
/// Linux <c>arch/arm64/include/asm/sysreg.h</c> lists them). Registers QEMU saves that are not in the table keep
/// their generic "S3_0_C…" name.
/// </summary>
public static class Arm64SystemRegisters
{
    /// <summary>SCTLR_EL1: system control (M = MMU on, bit 0).</summary>
    public static readonly Arm64SystemRegister SctlrEl1 = new("SCTLR_EL1", 3, 0, 1, 0, 0);

    /// <summary>CPACR_EL1.</summary>
    public static readonly Arm64SystemRegister CpacrEl1 = new("CPACR_EL1", 3, 0, 1, 0, 2);

    /// <summary>TTBR0_EL1: the lower (user) half's translation table base, ASID in bits 63:48.</summary>
    public static readonly Arm64SystemRegister Ttbr0El1 = new("TTBR0_EL1", 3, 0, 2, 0, 0);

    /// <summary>TTBR1_EL1: the upper (kernel) half's translation table base.</summary>
    public static readonly Arm64SystemRegister Ttbr1El1 = new("TTBR1_EL1", 3, 0, 2, 0, 1);

    /// <summary>TCR_EL1: translation control (T0SZ, T1SZ, granules, TBI, DS).</summary>
    public static readonly Arm64SystemRegister TcrEl1 = new("TCR_EL1", 3, 0, 2, 0, 2);

    /// <summary>ESR_EL1: exception syndrome.</summary>
    public static readonly Arm64SystemRegister EsrEl1 = new("ESR_EL1", 3, 0, 5, 2, 0);

    /// <summary>FAR_EL1: fault address.</summary>
    public static readonly Arm64SystemRegister FarEl1 = new("FAR_EL1", 3, 0, 6, 0, 0);

    /// <summary>PAR_EL1: physical address register.</summary>
    public static readonly Arm64SystemRegister ParEl1 = new("PAR_EL1", 3, 0, 7, 4, 0);

    /// <summary>MAIR_EL1: memory attribute indirection.</summary>
    public static readonly Arm64SystemRegister MairEl1 = new("MAIR_EL1", 3, 0, 10, 2, 0);

    /// <summary>AMAIR_EL1.</summary>
    public static readonly Arm64SystemRegister AmairEl1 = new("AMAIR_EL1", 3, 0, 10, 3, 0);

    /// <summary>VBAR_EL1: exception vector base.</summary>
    public static readonly Arm64SystemRegister VbarEl1 = new("VBAR_EL1", 3, 0, 12, 0, 0);

    /// <summary>CONTEXTIDR_EL1.</summary>
    public static readonly Arm64SystemRegister ContextidrEl1 = new("CONTEXTIDR_EL1", 3, 0, 13, 0, 1);

    /// <summary>TPIDR_EL1: Linux keeps the per-CPU offset here.</summary>
    public static readonly Arm64SystemRegister TpidrEl1 = new("TPIDR_EL1", 3, 0, 13, 0, 4);

    /// <summary>TPIDR_EL0: user thread pointer.</summary>
    public static readonly Arm64SystemRegister TpidrEl0 = new("TPIDR_EL0", 3, 3, 13, 0, 2);

    /// <summary>TPIDRRO_EL0.</summary>
    public static readonly Arm64SystemRegister TpidrroEl0 = new("TPIDRRO_EL0", 3, 3, 13, 0, 3);

    /// <summary>CNTKCTL_EL1.</summary>
    public static readonly Arm64SystemRegister CntkctlEl1 = new("CNTKCTL_EL1", 3, 0, 14, 1, 0);

    /// <summary>MIDR_EL1: main ID.</summary>
    public static readonly Arm64SystemRegister MidrEl1 = new("MIDR_EL1", 3, 0, 0, 0, 0);

    /// <summary>MPIDR_EL1: multiprocessor affinity.</summary>
    public static readonly Arm64SystemRegister MpidrEl1 = new("MPIDR_EL1", 3, 0, 0, 0, 5);

    /// <summary>ID_AA64MMFR0_EL1: memory model features (PA range, granules).</summary>
    public static readonly Arm64SystemRegister IdAa64Mmfr0El1 = new("ID_AA64MMFR0_EL1", 3, 0, 0, 7, 0);

    /// <summary>CNTV_CTL_EL0.</summary>
    public static readonly Arm64SystemRegister CntvCtlEl0 = new("CNTV_CTL_EL0", 3, 3, 14, 3, 1);

    /// <summary>CNTV_CVAL_EL0.</summary>
    public static readonly Arm64SystemRegister CntvCvalEl0 = new("CNTV_CVAL_EL0", 3, 3, 14, 3, 2);

    /// <summary>MDSCR_EL1.</summary>
    public static readonly Arm64SystemRegister MdscrEl1 = new("MDSCR_EL1", 2, 0, 0, 2, 2);

    /// <summary>Every named register.</summary>
    public static readonly IReadOnlyList<Arm64SystemRegister> All =
    [
        SctlrEl1, CpacrEl1, Ttbr0El1, Ttbr1El1, TcrEl1, EsrEl1, FarEl1, ParEl1, MairEl1, AmairEl1, VbarEl1,
        ContextidrEl1, TpidrEl1, TpidrEl0, TpidrroEl0, CntkctlEl1, MidrEl1, MpidrEl1, IdAa64Mmfr0El1, CntvCtlEl0,
        CntvCvalEl0, MdscrEl1,
    ];

    private static readonly Dictionary<ulong, Arm64SystemRegister> s_byId = All.ToDictionary(r => r.KvmId);
    private static readonly Dictionary<string, Arm64SystemRegister> s_byName = All.ToDictionary(r => r.Name, StringComparer.OrdinalIgnoreCase);

    /// <summary>The named register with KVM-style id <paramref name="kvmId"/>, or null.</summary>
    public static Arm64SystemRegister? FindById(ulong kvmId) => s_byId.GetValueOrDefault(kvmId);

    /// <summary>The named register called <paramref name="name"/> (case-insensitive), or null.</summary>
    public static Arm64SystemRegister? FindByName(string name) => s_byName.GetValueOrDefault(name);

    /// <summary>The name of the register with id <paramref name="kvmId"/>: its own, the generic one, or the id in hex.</summary>
    public static string NameOf(ulong kvmId) =>
        FindById(kvmId)?.Name ?? Arm64SystemRegister.GenericName(kvmId) ?? $"0x{kvmId:x16}";
}
