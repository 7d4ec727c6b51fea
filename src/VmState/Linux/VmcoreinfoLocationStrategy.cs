using VmState.Arch.X86;

namespace VmState.Linux;

/// <summary>
/// The root from VMCOREINFO: DTB = <c>init_top_pgt</c> (= <c>swapper_pg_dir</c>) − <c>__START_KERNEL_map</c> +
/// <c>phys_base</c> (Volatility's <c>_vmcoreinfo_get_dtb</c>), in the paging mode VMCOREINFO or the vCPUs give.
/// </summary>
internal sealed class VmcoreinfoLocationStrategy : IKernelLocationStrategy
{
    /// <inheritdoc />
    public KernelLocationMethod Method => KernelLocationMethod.Vmcoreinfo;

    /// <inheritdoc />
    public LinuxKernel? TryLocate(KernelLocationContext context)
    {
        if (context.Vmcoreinfo is not Vmcoreinfo info)
        {
            return null;
        }

        ulong? pgt = info.Symbol("init_top_pgt") ?? info.Symbol("swapper_pg_dir");
        if (pgt is ulong top && info.PhysBase is long physBase && top >= KernelImageMap.StartKernelMap)
        {
            ulong root = (ulong)((long)(top - KernelImageMap.StartKernelMap) + physBase);
            foreach (PagingMode mode in context.CandidateModes())
            {
                LinuxKernel? k = KernelLocator.TryRoot(context, new AddressSpace(context.Machine.Memory, mode, root), $"VMCOREINFO init_top_pgt 0x{top:x} → physical 0x{root:x}", Method);
                if (k is not null)
                {
                    return k;
                }
            }
        }
        else
        {
            context.Evidence.Add("VMCOREINFO has no SYMBOL(init_top_pgt)/SYMBOL(swapper_pg_dir) with NUMBER(phys_base) (not an x86-64 kernel?)");
        }

        return null;
    }
}
