using System.Globalization;
using VmState.Arch.Arm64;
using VmState.Arch.X86;

namespace VmState.Machine;

/// <summary>
/// The address spaces a saved or running machine's vCPUs give: the one a vCPU is using (or another page-table root
/// in its paging mode), and the kernel half of the address space, as <c>vmstate translate</c>, <c>read</c> and
/// <c>extract</c> use them.
/// </summary>
public static class CpuAddressSpaces
{
    /// <summary>Virtual aliases of one 4 KiB physical page that <see cref="KernelMappings"/> keeps by default.</summary>
    public const int DefaultMaxAliasesPerPage = 8;

    /// <summary>
    /// The address space of vCPU <paramref name="cpu"/>: its paging mode and CR3, or <paramref name="cr3"/> as the
    /// root in the same paging mode (e.g. a process's page tables).
    /// </summary>
    /// <exception cref="ArgumentException">The machine has no vCPU state at all (a raw image): there is no paging mode.</exception>
    /// <exception cref="VmStateNotFoundException">There is no vCPU <paramref name="cpu"/> (<see cref="VmStateObjectKind.Cpu"/>).</exception>
    public static AddressSpace Of(MachineState machine, int cpu, ulong? cr3 = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        if (machine.Cpus.Count == 0)
        {
            throw new ArgumentException($"{machine.SourcePath} has no vCPU state, so there is no page-table root; give a snapshot or core with CPU notes");
        }

        if (cpu < 0 || cpu >= machine.Cpus.Count)
        {
            throw new VmStateNotFoundException(VmStateObjectKind.Cpu, cpu.ToString(CultureInfo.InvariantCulture), $"no vCPU {cpu}: the snapshot has vCPUs 0-{machine.Cpus.Count - 1}");
        }

        X86CpuState c = machine.Cpus[cpu];
        AddressSpace space = AddressSpace.Of(machine.Memory, c);
        return cr3 is ulong root ? new AddressSpace(machine.Memory, space.Mode, root, (c.Cr4 & (1UL << 4)) != 0) : space;
    }

    /// <summary>
    /// The EL1&amp;0 address space of AArch64 vCPU <paramref name="cpu"/> (its TCR_EL1, TTBR0_EL1 and TTBR1_EL1), with
    /// <paramref name="ttbr0"/> or <paramref name="ttbr1"/> as the table base of that half when given.
    /// </summary>
    /// <exception cref="ArgumentException">The machine has no AArch64 vCPU state.</exception>
    /// <exception cref="VmStateNotFoundException">There is no vCPU <paramref name="cpu"/> (<see cref="VmStateObjectKind.Cpu"/>).</exception>
    /// <exception cref="NotSupportedException">The vCPU uses a 16 KiB or 64 KiB granule, or 52-bit addresses.</exception>
    public static Arm64AddressSpace OfArm64(MachineState machine, int cpu, ulong? ttbr0 = null, ulong? ttbr1 = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        if (machine.Arm64Cpus.Count == 0)
        {
            throw new ArgumentException($"{machine.SourcePath} has no AArch64 vCPU state, so there are no translation table bases");
        }

        if (cpu < 0 || cpu >= machine.Arm64Cpus.Count)
        {
            throw new VmStateNotFoundException(VmStateObjectKind.Cpu, cpu.ToString(CultureInfo.InvariantCulture), $"no vCPU {cpu}: the snapshot has vCPUs 0-{machine.Arm64Cpus.Count - 1}");
        }

        Arm64CpuState c = machine.Arm64Cpus[cpu];
        return new Arm64AddressSpace(machine.Memory, c.TcrEl1, ttbr0 ?? c.Ttbr0El1, ttbr1 ?? c.Ttbr1El1);
    }

    /// <summary>
    /// The vCPU whose page tables map the kernel: one running in kernel mode (CPL 0) with 4- or 5-level paging,
    /// else any with 4- or 5-level paging (with PTI a user-mode vCPU's CR3 maps almost none of the kernel), or null.
    /// </summary>
    public static X86CpuState? KernelCpu(MachineState machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        return machine.Cpus.FirstOrDefault(c => (c.Segments[X86CpuState.Cs].Selector & 3) == 0 && IsLongModePaging(c))
            ?? machine.Cpus.FirstOrDefault(IsLongModePaging);
    }

    /// <summary>
    /// The mappings of the kernel half of <see cref="KernelCpu"/>'s address space (from 0xffff800000000000, or
    /// 0xff00000000000000 with 5-level paging), for the PT_LOADs of kernel virtual addresses in a core. A physical
    /// 4 KiB page mapped at many addresses keeps only its first <paramref name="maxAliasesPerPage"/> aliases: the
    /// espfix64 stacks map one page 65536 times, which would add a PT_LOAD each and slow down every reader of the
    /// core (drgn searches its segments linearly). Empty when no vCPU has 4- or 5-level paging on.
    /// </summary>
    public static IReadOnlyList<VirtualMapping> KernelMappings(MachineState machine, int maxAliasesPerPage = DefaultMaxAliasesPerPage)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxAliasesPerPage);
        X86CpuState? cpu = KernelCpu(machine);
        if (cpu is null)
        {
            return [];
        }

        AddressSpace space = AddressSpace.Of(machine.Memory, cpu);
        ulong kernelStart = space.Mode == PagingMode.Level5 ? 0xff00_0000_0000_0000UL : 0xffff_8000_0000_0000UL;
        var list = new List<VirtualMapping>();
        var aliasesOf = new Dictionary<ulong, int>();
        foreach (VirtualMapping v in space.Mappings(kernelStart, ulong.MaxValue))
        {
            if (v.VirtualAddress < kernelStart)
            {
                continue;
            }

            if (v.Size == 0x1000)
            {
                int seen = aliasesOf.GetValueOrDefault(v.PhysicalAddress);
                aliasesOf[v.PhysicalAddress] = seen + 1;
                if (seen >= maxAliasesPerPage)
                {
                    continue;
                }
            }

            list.Add(v);
        }

        return list;
    }

    private static bool IsLongModePaging(X86CpuState c) => AddressSpace.ModeOf(c) is PagingMode.Level4 or PagingMode.Level5;
}
