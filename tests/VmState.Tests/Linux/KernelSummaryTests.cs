using VmState.Linux;

namespace VmState.Tests.Linux;

public class KernelSummaryTests
{
    [Fact]
    public void SummaryReadsPerCpuStateAndToleratesMissingSymbols()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);

        KernelSummary summary = KernelSummary.Read(k);

        Assert.Equal(s.PageOffsetBase, summary.PageOffsetBase);
        Assert.Null(summary.VmallocBase);
        Assert.Null(summary.Hostname);
        Assert.Null(summary.CommandLine);
        Assert.Equal([(0, (ulong?)s.PerCpuOffset(0), (int?)0, "swapper/0"), (1, s.PerCpuOffset(1), 1, "init")], summary.Cpus);
        Assert.Equal(s.Btf.Length, summary.BtfBytes);
        Assert.Null(summary.BtfProblem);
    }

    [Fact]
    public void ABrokenBtfIsReportedNotThrown()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);
        s.WriteU32(k.Symbols.AddressOf("__start_BTF"), 0xdeadbeef);

        KernelSummary summary = KernelSummary.Read(k);

        Assert.Null(summary.BtfTypes);
        Assert.Contains("magic", summary.BtfProblem, StringComparison.Ordinal);
        Assert.Equal(s.PerCpuOffset(1), summary.Cpus[1].PerCpuOffset);
        Assert.Null(summary.Cpus[1].Pid);
    }
}
