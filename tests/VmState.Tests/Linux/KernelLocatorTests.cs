using VmState.Arch.X86;
using VmState.Linux;
using VmState.Machine;
using VmState.Tests.Support;

namespace VmState.Tests.Linux;

/// <summary>Each way of finding the kernel (VMCOREINFO, CR3, banner) on a synthetic KASLR'd kernel, 4- and 5-level.</summary>
public class KernelLocatorTests
{
    public static TheoryData<PagingMode> Modes() => new() { PagingMode.Level4, PagingMode.Level5 };

    private static void AssertKernel(SyntheticLinux s, LinuxKernel k)
    {
        Assert.Equal(s.Text, k.TextAddress);
        Assert.Equal(SyntheticLinux.TextPa, k.TextPhysicalAddress);
        Assert.Equal(s.PhysBase, k.PhysBase);
        Assert.True(k.PhysBase < 0, "the sample's phys_base is negative, as on the Debian guest");
        Assert.Equal((long)SyntheticLinux.Slide, k.KaslrOffset);
        Assert.Equal(s.Mode, k.Paging);
        Assert.Equal(s.Root, k.PageTableRoot);
        Assert.Equal(SyntheticLinux.Release, k.Release);
        Assert.Equal(s.Banner, k.Banner);
        Assert.Equal(s.SymbolCount, k.Symbols.Count);
        Assert.Equal(s.InitTask, k.Symbols.AddressOf("init_task"));
        Assert.Equal(s.PageOffsetBase, k.PageOffsetBase);
        Assert.StartsWith("validated: linux_banner", k.Evidence[^1], StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void VmcoreinfoGivesTheRootAndTheKallsymsTables(PagingMode mode)
    {
        var s = new SyntheticLinux(mode);

        LinuxKernel k = KernelLocator.Locate(s.Machine);

        AssertKernel(s, k);
        Assert.Equal(KernelLocationMethod.Vmcoreinfo, k.Method);
        Assert.Equal("VMCOREINFO", k.Symbols.Layout.Source);
        Assert.Equal("note in the input core", k.VmcoreinfoSource);
        Assert.Equal(SyntheticLinux.Release, k.Vmcoreinfo!.OsRelease);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void Cr3WithPcidAndThePtiUserBitGivesTheKernelHalf(PagingMode mode)
    {
        // User mode under PTI: CR3 points at the user half (bit 12) and carries a PCID.
        var s = new SyntheticLinux(mode, vmcoreinfo: false, cr3Bits: 0x1000 | 0x805);

        LinuxKernel k = KernelLocator.Locate(s.Machine);

        AssertKernel(s, k);
        Assert.Equal(KernelLocationMethod.ControlRegister, k.Method);
        Assert.StartsWith("structural scan", k.Symbols.Layout.Source, StringComparison.Ordinal);
        Assert.Contains(k.Evidence, e => e.Contains("bit 12 (PTI user half) cleared", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void WithoutCpuStateTheBannerAndPhysicalKallsymsGiveTheRoot(PagingMode mode)
    {
        var s = new SyntheticLinux(mode, vmcoreinfo: false, cpus: false);

        LinuxKernel k = KernelLocator.Locate(s.Machine);

        AssertKernel(s, k);
        Assert.Equal(KernelLocationMethod.Banner, k.Method);
        Assert.Equal("structural scan of physical memory", k.Symbols.Layout.Source);
    }

    [Fact]
    public void OldVmcoreinfoWithoutKallsymsAddressesFallsBackToTheImageScan()
    {
        var s = new SyntheticLinux(vmcoreinfoKallsyms: false);

        LinuxKernel k = KernelLocator.Locate(s.Machine);

        AssertKernel(s, k);
        Assert.Equal(KernelLocationMethod.Vmcoreinfo, k.Method);
        Assert.StartsWith("structural scan", k.Symbols.Layout.Source, StringComparison.Ordinal);
    }

    [Fact]
    public void AWrongVmcoreinfoPhysBaseIsRejectedAndCr3IsUsed()
    {
        var s = new SyntheticLinux(vmcoreinfoPhysBaseOverride: 0x40000000);

        LinuxKernel k = KernelLocator.Locate(s.Machine);

        AssertKernel(s, k);
        Assert.Equal(KernelLocationMethod.ControlRegister, k.Method);
        Assert.Contains(k.Evidence, e => e.StartsWith("VMCOREINFO init_top_pgt", StringComparison.Ordinal));
    }

    [Fact]
    public void OptionsSelectTheSources()
    {
        var s = new SyntheticLinux();

        LinuxKernel k = KernelLocator.Locate(s.Machine, new KernelLocatorOptions { UseVmcoreinfo = false });

        Assert.Equal(KernelLocationMethod.ControlRegister, k.Method);
        Assert.Null(k.Vmcoreinfo);
    }

    [Fact]
    public void NoKernelGivesAnErrorListingWhatWasTried()
    {
        var memory = new PageTableBuilder(PagingMode.Level4, memorySize: 16 << 20);
        var cpu = new X86CpuState { Cr0 = 0x80050033, Cr4 = 0x6b0, Efer = 0xd01, Cr3 = memory.Root };
        using var machine = new MachineState(new MachineOrigin(MachineOriginKind.RawImage, "empty", "test"), null, memory, [cpu], [], [], [], null);

        KernelDataException e = Assert.Throws<KernelDataException>(() => KernelLocator.Locate(machine));

        Assert.Contains("not found", e.Message, StringComparison.Ordinal);
        Assert.Contains("VMCOREINFO: none", e.Message, StringComparison.Ordinal);
        Assert.Contains("vCPU 0 CR3", e.Message, StringComparison.Ordinal);
        Assert.Contains("physical scan: no kallsyms tables", e.Message, StringComparison.Ordinal);

        // The reasons come in the order the strategies were tried: VMCOREINFO, CR3, banner scan.
        int vmcoreinfo = e.Message.IndexOf("VMCOREINFO: none", StringComparison.Ordinal);
        int cr3 = e.Message.IndexOf("vCPU 0 CR3", StringComparison.Ordinal);
        int scan = e.Message.IndexOf("physical scan", StringComparison.Ordinal);
        Assert.True(vmcoreinfo < cr3 && cr3 < scan, e.Message);
    }

    [Fact]
    public void OptionsChooseTheStrategiesInTheirFixedOrder()
    {
        KernelLocationMethod[] Methods(KernelLocatorOptions o) => [.. KernelLocator.Strategies(o).Select(s => s.Method)];

        Assert.Equal([KernelLocationMethod.Vmcoreinfo, KernelLocationMethod.ControlRegister, KernelLocationMethod.Banner], Methods(KernelLocatorOptions.Default));
        Assert.Equal([KernelLocationMethod.Vmcoreinfo, KernelLocationMethod.Banner], Methods(new KernelLocatorOptions { UseCpuState = false }));
        Assert.Equal([KernelLocationMethod.ControlRegister], Methods(new KernelLocatorOptions { UseVmcoreinfo = false, UseBannerScan = false }));
        Assert.Empty(Methods(new KernelLocatorOptions { UseVmcoreinfo = false, UseCpuState = false, UseBannerScan = false }));
    }

    [Fact]
    public void StrategiesAreTriedInOrderUntilOneFindsTheKernel()
    {
        var s = new SyntheticLinux(vmcoreinfo: false);
        var calls = new List<string>();

        LinuxKernel k = KernelLocator.LocateWith(s.Machine, new KernelLocatorOptions { UseVmcoreinfo = false },
        [
            new RecordingStrategy("first", calls),
            new RecordingStrategy("second", calls, new ControlRegisterLocationStrategy()),
            new RecordingStrategy("third", calls),
        ]);

        AssertKernel(s, k);
        Assert.Equal(["first", "second"], calls);
        Assert.Equal(KernelLocationMethod.ControlRegister, k.Method);
        Assert.Equal(["first: nothing here", "second: nothing here"], k.Evidence.Take(2));
    }

    [Fact]
    public void WhenNoStrategySucceedsTheMessageListsEachOnesReasonsInOrder()
    {
        var s = new SyntheticLinux(vmcoreinfo: false);
        var calls = new List<string>();

        KernelDataException e = Assert.Throws<KernelDataException>(() => KernelLocator.LocateWith(s.Machine, new KernelLocatorOptions { UseVmcoreinfo = false },
            [new RecordingStrategy("first", calls), new RecordingStrategy("second", calls)]));

        Assert.Equal(["first", "second"], calls);
        Assert.Equal("Linux kernel: not found. first: nothing here | second: nothing here", e.Message);
    }

    /// <summary>Records that it was tried and adds one reason; then hands over to <paramref name="inner"/>, if any.</summary>
    private sealed class RecordingStrategy(string name, List<string> calls, IKernelLocationStrategy? inner = null) : IKernelLocationStrategy
    {
        public KernelLocationMethod Method => inner?.Method ?? KernelLocationMethod.Banner;

        public LinuxKernel? TryLocate(KernelLocationContext context)
        {
            calls.Add(name);
            context.Evidence.Add($"{name}: nothing here");
            return inner?.TryLocate(context);
        }
    }

    [Fact]
    public void CpuStateFromACoreWithoutEferStillCountsAsLongMode()
    {
        // QEMU's ELF "QEMU" note has no EFER; a 64-bit CS with paging on means long mode.
        var s = new SyntheticLinux(vmcoreinfo: false);
        foreach (X86CpuState c in s.Machine.Cpus)
        {
            c.Efer = 0;
        }

        Assert.Equal(KernelLocationMethod.ControlRegister, KernelLocator.Locate(s.Machine, new KernelLocatorOptions { UseBannerScan = false }).Method);
    }
}
