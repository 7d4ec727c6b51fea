namespace VmState.Arch.Arm64;

/// <summary>
/// A named AArch64 system register and its id as QEMU's migration stream carries it in
/// <c>cpreg_vmstate_indexes</c>: the KVM register id (QEMU 7.2 <c>target/arm/kvm-consts.h</c>, <c>cpreg_to_kvm_id</c>
/// in <c>target/arm/cpu.h</c>): <c>0x6030_0000_0013_0000 | op0 &lt;&lt; 14 | op1 &lt;&lt; 11 | CRn &lt;&lt; 7 | CRm &lt;&lt; 3 | op2</c>.
/// </summary>
/// <param name="Name">The architectural name, e.g. "TTBR1_EL1".</param>
/// <param name="Op0">op0 of the MRS/MSR encoding.</param>
/// <param name="Op1">op1.</param>
/// <param name="CRn">CRn.</param>
/// <param name="CRm">CRm.</param>
/// <param name="Op2">op2.</param>
public sealed record Arm64SystemRegister(string Name, int Op0, int Op1, int CRn, int CRm, int Op2)
{
    /// <summary>KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG (0x13 &lt;&lt; 16).</summary>
    public const ulong KvmSysregBase = 0x6030_0000_0013_0000UL;

    /// <summary>The KVM-style id of the register (the value in <c>cpreg_vmstate_indexes</c>).</summary>
    public ulong KvmId => Encode(Op0, Op1, CRn, CRm, Op2);

    /// <summary>The KVM-style id of a system register encoding.</summary>
    public static ulong Encode(int op0, int op1, int crn, int crm, int op2) =>
        KvmSysregBase | ((uint)(op0 & 3) << 14) | ((uint)(op1 & 7) << 11) | ((uint)(crn & 15) << 7) | ((uint)(crm & 15) << 3) | (uint)(op2 & 7);

    /// <summary>
    /// The encoding of a KVM-style system register id as "S{op0}_{op1}_C{CRn}_C{CRm}_{op2}" (the assembler's generic
    /// name), or null when <paramref name="kvmId"/> is not a 64-bit AArch64 system register id.
    /// </summary>
    public static string? GenericName(ulong kvmId)
    {
        if ((kvmId & 0xFFFF_FFFF_FFFF_0000UL) != KvmSysregBase)
        {
            return null;
        }

        return $"S{(kvmId >> 14) & 3}_{(kvmId >> 11) & 7}_C{(kvmId >> 7) & 15}_C{(kvmId >> 3) & 15}_{kvmId & 7}";
    }
}
