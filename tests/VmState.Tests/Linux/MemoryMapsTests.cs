using VmState.Linux;
using VmState.Machine;

namespace VmState.Tests.Linux;

/// <summary>The pre-6.1 VMA list (mm->mmap, vm_next) on the synthetic kernel: names, order, and a looped list.</summary>
public sealed class MemoryMapsTests
{
    internal const int VmaStart = 0, VmaEnd = 8, VmaNext = 16, VmaFlags = 32;

    internal static (LinuxKernel Kernel, ulong Mm, ulong[] Vmas) WithVmas(SyntheticLinux linux, MachineState machine)
    {
        LinuxKernel k = KernelLocator.Locate(machine);
        ulong t = linux.Tasks[1];
        ulong mm = t + 0xa00;
        (ulong Start, ulong End, ulong Flags)[] areas =
        [
            (0x400000, 0x401000, 0x5),          // r-x, no name
            (0x1000000, 0x1021000, 0x3),        // rw-, between start_brk and brk: [heap]
            (0x7ffd0000, 0x7ffd1000, 0x3),      // rw-, holds start_stack: [stack]
        ];
        ulong[] vmas = [.. areas.Select((_, i) => t + 0xc00 + ((ulong)i * 0x80))];
        for (int i = 0; i < areas.Length; i++)
        {
            linux.WriteU64(vmas[i] + VmaStart, areas[i].Start);
            linux.WriteU64(vmas[i] + VmaEnd, areas[i].End);
            linux.WriteU64(vmas[i] + VmaFlags, areas[i].Flags);
            linux.WriteU64(vmas[i] + VmaNext, i + 1 < areas.Length ? vmas[i + 1] : 0);
        }

        linux.WriteU64(mm + SyntheticLinux.MmMmap, vmas[0]);
        linux.WriteU32(mm + SyntheticLinux.MmMapCount, (uint)areas.Length);
        linux.WriteU64(mm + SyntheticLinux.MmStartBrk, 0x1000000);
        linux.WriteU64(mm + SyntheticLinux.MmBrk, 0x1021000);
        linux.WriteU64(mm + SyntheticLinux.MmStartStack, 0x7ffd0800);
        return (k, mm, vmas);
    }

    [Fact]
    public void TheVmaListIsReadInOrderWithShowMapVmaNames()
    {
        var linux = new SyntheticLinux();
        MachineState machine = linux.Machine;
        (LinuxKernel k, _, _) = WithVmas(linux, machine);

        IReadOnlyList<LinuxVma> maps = MemoryMaps.Read(k, 1);

        Assert.Equal(
            [
                "00400000-00401000 r-xp 00000000 00:00 0 ",
                "01000000-01021000 rw-p 00000000 00:00 0                                  [heap]",
                "7ffd0000-7ffd1000 rw-p 00000000 00:00 0                                  [stack]",
            ],
            maps.Select(v => v.Format()));
    }

    [Fact]
    public void ALoopedOrWildVmaListEndsWithAClearError()
    {
        var linux = new SyntheticLinux();
        MachineState machine = linux.Machine;
        (LinuxKernel k, _, ulong[] vmas) = WithVmas(linux, machine);
        linux.WriteU64(vmas[^1] + VmaNext, vmas[0]);
        Assert.Contains("a loop", Assert.Throws<KernelDataException>(() => MemoryMaps.Read(k, 1)).Message, StringComparison.Ordinal);

        linux.WriteU64(vmas[^1] + VmaNext, 0xdead000000000000);
        Assert.Contains("not mapped", Assert.Throws<KernelDataException>(() => MemoryMaps.Read(k, 1)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void KernelThreadsAndUnknownPidsAreRefusedByName()
    {
        var linux = new SyntheticLinux();
        MachineState machine = linux.Machine;
        LinuxKernel k = KernelLocator.Locate(machine);
        Assert.Contains("kernel thread", Assert.Throws<KernelDataException>(() => MemoryMaps.Read(k, 2)).Message, StringComparison.Ordinal);
        VmStateNotFoundException noPid = Assert.Throws<VmStateNotFoundException>(() => MemoryMaps.Read(k, 4242));
        Assert.Equal((VmStateObjectKind.Process, "4242"), (noPid.Kind, noPid.Name));
        Assert.Contains("no task has pid 4242", noPid.Message, StringComparison.Ordinal);
    }
}
