namespace VmState.Arch.X86;

/// <summary>The operating mode of an x86 vCPU (Intel SDM vol. 3A §2.2), from CR0.PE/PG, EFER.LMA and CR4.PAE/LA57.</summary>
public static class X86OperatingMode
{
    /// <summary>
    /// <c>real</c>, <c>protected (no paging)</c>, <c>protected (32-bit paging)</c>, <c>protected (PAE paging)</c>,
    /// <c>long (4-level paging)</c> or <c>long (5-level paging)</c>.
    /// </summary>
    public static string Describe(X86CpuState cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        if ((cpu.Cr0 & 1) == 0)
        {
            return "real";
        }

        if (cpu.LongMode)
        {
            return (cpu.Cr4 & (1UL << 12)) != 0 ? "long (5-level paging)" : "long (4-level paging)";
        }

        if ((cpu.Cr0 & (1UL << 31)) == 0)
        {
            return "protected (no paging)";
        }

        return (cpu.Cr4 & (1UL << 5)) != 0 ? "protected (PAE paging)" : "protected (32-bit paging)";
    }
}
