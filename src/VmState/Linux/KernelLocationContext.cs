using VmState.Arch.X86;
using VmState.Machine;

namespace VmState.Linux;

/// <summary>
/// What every kernel-location strategy starts from: the machine, the VMCOREINFO found (if any, and where), the paging
/// mode the vCPUs are in, and the evidence collected so far by <see cref="KernelLocator"/> and the strategies tried
/// before.
/// </summary>
internal sealed class KernelLocationContext
{
    public KernelLocationContext(MachineState machine, Vmcoreinfo? vmcoreinfo, string? vmcoreinfoSource, List<string> evidence)
    {
        Machine = machine;
        Vmcoreinfo = vmcoreinfo;
        VmcoreinfoSource = vmcoreinfoSource;
        Evidence = evidence;
        foreach (X86CpuState c in machine.Cpus)
        {
            if (ModeOf(c) is PagingMode.Level4 or PagingMode.Level5)
            {
                CpuMode = ModeOf(c);
                break;
            }
        }
    }

    /// <summary>The machine searched.</summary>
    public MachineState Machine { get; }

    /// <summary>The guest's VMCOREINFO, when one was found and VMCOREINFO may be used.</summary>
    public Vmcoreinfo? Vmcoreinfo { get; }

    /// <summary>Where <see cref="Vmcoreinfo"/> came from.</summary>
    public string? VmcoreinfoSource { get; }

    /// <summary>The 64-bit paging mode of the first vCPU that is in one, or null.</summary>
    public PagingMode? CpuMode { get; }

    /// <summary>Each step taken so far, in order.</summary>
    public List<string> Evidence { get; }

    /// <summary>
    /// The vCPU's paging mode. QEMU's ELF "QEMU" note (<c>target/i386/arch_dump.c</c> QEMUCPUState) carries no EFER,
    /// so a core reads back with EFER = 0; there a 64-bit code segment (CS.L) with CR4.PAE and CR0.PG means long mode.
    /// </summary>
    public static PagingMode ModeOf(X86CpuState c)
    {
        PagingMode mode = AddressSpace.ModeOf(c);
        if (mode == PagingMode.Pae && c.Efer == 0 && c.Segments[X86CpuState.Cs].Long)
        {
            return (c.Cr4 & (1UL << 12)) != 0 ? PagingMode.Level5 : PagingMode.Level4;
        }

        return mode;
    }

    /// <summary>The paging modes to try a root with: VMCOREINFO's pgtable_l5_enabled, else the vCPUs' mode, else both.</summary>
    public IEnumerable<PagingMode> CandidateModes()
    {
        if (Vmcoreinfo?.FiveLevelPaging is bool l5)
        {
            return [l5 ? PagingMode.Level5 : PagingMode.Level4];
        }

        if (CpuMode is PagingMode m)
        {
            return [m];
        }

        // CONFIG_X86_5LEVEL alone does not mean LA57 is on (§4.6): try both.
        return [PagingMode.Level4, PagingMode.Level5];
    }
}
