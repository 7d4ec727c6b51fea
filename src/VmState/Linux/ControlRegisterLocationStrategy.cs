using VmState.Arch.X86;

namespace VmState.Linux;

/// <summary>
/// The root from each vCPU's CR3 in 64-bit paging: the PCID and flag bits cleared, then the PTI kernel half (bit 12
/// clear) tried before the raw value (crash <c>kaslr_helper.c calc_kaslr_offset</c>).
/// </summary>
internal sealed class ControlRegisterLocationStrategy : IKernelLocationStrategy
{
    private const ulong PhysMask = 0x000F_FFFF_FFFF_F000UL;

    /// <inheritdoc />
    public KernelLocationMethod Method => KernelLocationMethod.ControlRegister;

    /// <inheritdoc />
    public LinuxKernel? TryLocate(KernelLocationContext context)
    {
        var tried = new HashSet<(ulong, PagingMode)>();
        foreach (X86CpuState c in context.Machine.Cpus)
        {
            PagingMode mode = KernelLocationContext.ModeOf(c);
            if (mode is not (PagingMode.Level4 or PagingMode.Level5))
            {
                context.Evidence.Add($"vCPU {c.Index}: not in 64-bit paging mode ({mode}), CR3 not usable");
                continue;
            }

            ulong cr3 = c.Cr3 & PhysMask;
            foreach (ulong root in new[] { cr3 & ~0x1000UL, cr3 })
            {
                if (!tried.Add((root, mode)))
                {
                    continue;
                }

                string label = $"vCPU {c.Index} CR3 0x{c.Cr3:x}{(root != cr3 ? " with bit 12 (PTI user half) cleared" : string.Empty)} → 0x{root:x}, {(mode == PagingMode.Level5 ? 5 : 4)}-level";
                LinuxKernel? k = KernelLocator.TryRoot(context, new AddressSpace(context.Machine.Memory, mode, root), label, Method);
                if (k is not null)
                {
                    return k;
                }
            }
        }

        if (context.Machine.Cpus.Count == 0)
        {
            context.Evidence.Add("no vCPU state in the input");
        }

        return null;
    }
}
