using VmState.Arch.Arm64;
using VmState.Machine;

namespace VmState.Linux;

/// <summary>
/// An AArch64 kernel's memory: image addresses (text, data, bss) at <c>va − kimage_voffset</c>, linear-map
/// addresses at <c>va − PAGE_OFFSET + PHYS_OFFSET</c>, everything else (vmalloc, modules, vmemmap) through
/// swapper_pg_dir; a process's memory through its mm-&gt;pgd as TTBR0_EL1. <c>current</c> is SP_EL0 while a vCPU
/// is at EL1 (Linux <c>arch/arm64/include/asm/current.h</c>).
/// </summary>
internal sealed class Arm64KernelMemory(MachineState machine, Arm64KernelLayout layout, Arm64AddressSpace space, ulong imageStart, ulong imageEnd) : IKernelMemoryModel
{
    /// <inheritdoc />
    public int Read(ulong address, Span<byte> destination)
    {
        ulong length = (ulong)destination.Length;
        if (address >= imageStart && address < imageEnd && length <= imageEnd - address)
        {
            return machine.Memory.Read(layout.ImageToPhysical(address), destination);
        }

        // The linear map is the lower half of the kernel's range: [PAGE_OFFSET, PAGE_OFFSET + 2^(VA_BITS-1)).
        ulong linearEnd = layout.PageOffset + (1UL << (layout.VaBits - 1));
        if (address >= layout.PageOffset && address < linearEnd && length <= linearEnd - address)
        {
            int n = machine.Memory.Read(layout.LinearToPhysical(address), destination);
            if (n == destination.Length)
            {
                return n;
            }
        }

        return space.Read(address, destination);
    }

    /// <inheritdoc />
    public int ReadUser(ulong pgd, ulong address, Span<byte> destination) =>
        space.WithTtbr0(layout.LinearToPhysical(pgd)).Read(address, destination);

    /// <inheritdoc />
    public ulong? CurrentTask(int cpu)
    {
        if (cpu < 0 || cpu >= machine.Arm64Cpus.Count)
        {
            return null;
        }

        Arm64CpuState c = machine.Arm64Cpus[cpu];
        return !c.Aarch32 && c.ExceptionLevel == 1 && c.SpEl[0] >= layout.PageOffset ? c.SpEl[0] : null;
    }
}
