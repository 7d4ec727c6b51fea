using VmState.Arch.X86;
using VmState.Machine;
using VmState.Memory;
using VmState.Tests.Support;

namespace VmState.Tests.Arch;

/// <summary>The library's choice of page tables (translate, read --va) and the kernel mappings extract puts in a core.</summary>
public sealed class CpuAddressSpacesTests
{
    private const ulong KernelVa = 0xffff_ffff_8100_0000UL;

    private static X86CpuState Cpu(int index, ulong cr3, ushort cs, bool longMode = true) => new()
    {
        Index = index,
        Cr0 = 0x80050033,
        Cr3 = cr3,
        Cr4 = longMode ? 0x6b0UL : 0x690UL,
        Efer = longMode ? 0xd01UL : 0,
        Segments = { [X86CpuState.Cs] = new X86Segment(cs, 0, 0xffffffff, 0x209b00) },
    };

    private static MachineState Machine(IPhysicalMemory memory, params X86CpuState[] cpus) =>
        new("test.mig", "test", null, memory, cpus, [], [], [], null);

    [Fact]
    public void AVcpusSpaceUsesItsCr3OrTheRootGivenInItsPagingMode()
    {
        var pt = new PageTableBuilder(PagingMode.Level4);
        pt.Map(0x400000, 0x200000, 0x1000);
        using MachineState m = Machine(pt, Cpu(0, 0x1000, 0x10), Cpu(1, pt.Root, 0x33));
        AddressSpace own = CpuAddressSpaces.Of(m, 1);
        Assert.Equal((PagingMode.Level4, pt.Root), (own.Mode, own.Cr3));
        Assert.True(own.TryTranslate(0x400010, out ulong pa));
        Assert.Equal(0x200010UL, pa);

        // vCPU 0's CR3 maps nothing; the same mode with the root given does.
        Assert.False(CpuAddressSpaces.Of(m, 0).TryTranslate(0x400010, out _));
        AddressSpace other = CpuAddressSpaces.Of(m, 0, pt.Root);
        Assert.Equal((PagingMode.Level4, pt.Root), (other.Mode, other.Cr3));
        Assert.True(other.TryTranslate(0x400010, out _));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(-1)]
    public void AMissingVcpuIsNotFound(int cpu)
    {
        using MachineState m = Machine(new PageTableBuilder(PagingMode.Level4), Cpu(0, 0, 0x10), Cpu(1, 0, 0x10));
        var e = Assert.Throws<VmStateNotFoundException>(() => CpuAddressSpaces.Of(m, cpu));
        Assert.Equal((VmStateObjectKind.Cpu, cpu.ToString(System.Globalization.CultureInfo.InvariantCulture)), (e.Kind, e.Name));
        Assert.Contains("vCPUs 0-1", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AMachineWithoutVcpusHasNoPageTableRoot()
    {
        using MachineState m = Machine(new PageTableBuilder(PagingMode.Level4));
        var e = Assert.Throws<ArgumentException>(() => CpuAddressSpaces.Of(m, 0));
        Assert.Contains("test.mig has no vCPU state", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheKernelCpuIsOneInKernelModeWithLongModePaging()
    {
        var pt = new PageTableBuilder(PagingMode.Level4);
        X86CpuState user = Cpu(0, pt.Root, 0x33), legacy = Cpu(1, pt.Root, 0x10, longMode: false), kernel = Cpu(2, pt.Root, 0x10);
        using (MachineState m = Machine(pt, user, legacy, kernel))
        {
            Assert.Same(kernel, CpuAddressSpaces.KernelCpu(m));
        }

        // No vCPU in kernel mode: any with 4- or 5-level paging (with PTI its CR3 maps little of the kernel).
        using (MachineState m = Machine(pt, legacy, user))
        {
            Assert.Same(user, CpuAddressSpaces.KernelCpu(m));
        }

        using (MachineState m = Machine(pt, legacy))
        {
            Assert.Null(CpuAddressSpaces.KernelCpu(m));
            Assert.Empty(CpuAddressSpaces.KernelMappings(m));
        }
    }

    [Fact]
    public void KernelMappingsAreTheKernelHalfWithFewAliasesOfOnePage()
    {
        var pt = new PageTableBuilder(PagingMode.Level4);
        pt.Map(0x400000, 0x300000, 0x1000);                           // user half: left out
        pt.Map(KernelVa, 0x1000000, 0x200000, user: false);           // a 2 MiB page
        for (ulong i = 0; i < 20; i++)
        {
            pt.Map(0xffff_fe00_0000_0000UL + (i * 0x1000), 0x2000000, 0x1000, user: false); // espfix-like aliases of one page
        }

        using MachineState m = Machine(pt, Cpu(0, pt.Root, 0x10));
        IReadOnlyList<VirtualMapping> all = CpuAddressSpaces.KernelMappings(m);
        Assert.DoesNotContain(all, v => v.VirtualAddress < 0xffff_8000_0000_0000UL);
        Assert.Contains(all, v => v.VirtualAddress == KernelVa && v.Size == 0x200000 && v.PhysicalAddress == 0x1000000);
        Assert.Equal(CpuAddressSpaces.DefaultMaxAliasesPerPage, all.Count(v => v.PhysicalAddress == 0x2000000));
        Assert.Equal(3, CpuAddressSpaces.KernelMappings(m, maxAliasesPerPage: 3).Count(v => v.PhysicalAddress == 0x2000000));
        Assert.Equal(
            [.. Enumerable.Range(0, 8).Select(i => 0xffff_fe00_0000_0000UL + ((ulong)i * 0x1000))],
            all.Where(v => v.PhysicalAddress == 0x2000000).Select(v => v.VirtualAddress).ToArray());
    }

    [Theory]
    [InlineData(0x10UL, 0UL, 0UL, "real")]
    [InlineData(0x11UL, 0UL, 0UL, "protected (no paging)")]
    [InlineData(0x80000011UL, 0UL, 0UL, "protected (32-bit paging)")]
    [InlineData(0x80000011UL, 0x20UL, 0UL, "protected (PAE paging)")]
    [InlineData(0x80000011UL, 0x20UL, 0x500UL, "long (4-level paging)")]
    [InlineData(0x80000011UL, 0x1020UL, 0x500UL, "long (5-level paging)")]
    public void OperatingModesAreNamed(ulong cr0, ulong cr4, ulong efer, string mode) =>
        Assert.Equal(mode, X86OperatingMode.Describe(new X86CpuState { Cr0 = cr0, Cr4 = cr4, Efer = efer }));
}
