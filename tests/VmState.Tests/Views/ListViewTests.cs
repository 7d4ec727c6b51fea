using System.Globalization;
using VmState.Linux;
using VmState.Views;

namespace VmState.Tests.Views;

/// <summary>The library's list views: their text tables (as the CLI printed them before they moved) and fields.</summary>
public sealed class ListViewTests
{
    private static readonly LinuxProcess s_init = new(1, 1, 0, 0, 0, 'S', "init", "init", 0xffff888001234000, false, 100_000_000, 1, "/sbin/init splash");
    private static readonly LinuxProcess s_kthread = new(2, 2, 0, 0, 0, 'S', "kthreadd", "kthreadd", 0xffff888001238000, true, 150_000_000, 1, null);
    private static readonly LinuxProcess s_thread = new(101, 100, 1, 1000, 1001, 'D', "worker-t", "worker-t", 0x1000, false, 12_345_678_901, 2, null);

    [Fact]
    public void ProcessTablesKeepPsColumns()
    {
        ListView<LinuxProcess> v = LinuxListViews.Processes(threads: false);
        Assert.Equal("    PID   PPID    UID S    START COMM             COMMAND", v.FormatHeader());
        Assert.Equal("      1      0      0 S     0.10 init             /sbin/init splash", v.FormatRow(s_init));
        Assert.Equal("      2      0      0 S     0.15 kthreadd         [kthreadd]", v.FormatRow(s_kthread));
        Assert.Equal("    101      1   1000 D    12.35 worker-t         ", v.FormatRow(s_thread));

        ListView<LinuxProcess> t = LinuxListViews.Processes(threads: true);
        Assert.Equal("    PID    TID   PPID    UID S    START COMM             COMMAND", t.FormatHeader());
        Assert.Equal("    100    101      1   1000 D    12.35 worker-t         ", t.FormatRow(s_thread));
        Assert.Equal(
            ["pid", "tgid", "ppid", "uid", "gid", "state", "name", "comm", "kernelThread", "threads", "startTimeNs", "cmdline", "task"],
            t.Fields.Select(f => f.Name));
        Assert.Equal('D'.ToString(), t.Field("state")!.ValueOf(s_thread));
        Assert.Null(t.Field("cmdline")!.ValueOf(s_thread));
    }

    [Fact]
    public void ModuleAndDeviceTablesKeepTheirColumns()
    {
        var mod = new LinuxModule("e1000", 0xffffffffc0400000, "live", 0xffffffffc0410000, 163840, 0, 321);
        Assert.Equal("NAME                        SIZE  REFS STATE    BASE", LinuxListViews.Modules.FormatHeader());
        Assert.Equal("e1000                     163840     0 live     0xffffffffc0410000", LinuxListViews.Modules.FormatRow(mod));

        var dev = new LinuxNetDevice("eth0", 2, "52:54:00:12:34:56", "52:54:00:12:34:56", 0x1003, 1500, 0xffff888003000000, 0, 0);
        Assert.Equal("IDX NAME       MAC               STATE   MTU FLAGS", LinuxListViews.NetDevices.FormatHeader());
        Assert.Equal("  2 eth0       52:54:00:12:34:56 UP     1500 0x1003", LinuxListViews.NetDevices.FormatRow(dev));
        Assert.Equal(true, LinuxListViews.NetDevices.Field("up")!.ValueOf(dev));
        Assert.Equal(0x1003UL, LinuxListViews.NetDevices.Field("flags")!.ValueOf(dev));
    }

    [Fact]
    public void MapsLogAndSymbolsAreLinesWithoutAHeader()
    {
        var vma = new LinuxVma(0x400000, 0x401000, 0x5, 0, 8, 1, 1234, "/bin/busybox", 0xffff888004000000, 0);
        Assert.Null(LinuxListViews.Maps.FormatHeader());
        Assert.Equal(vma.Format(), LinuxListViews.Maps.FormatRow(vma));
        Assert.Equal("08:01", LinuxListViews.Maps.Field("dev")!.ValueOf(vma));

        var rec = new KernelLogRecord(7, 5_123_456_789, 4, 0, "T1", "hello");
        Assert.Equal("[    5.123456] hello", LinuxListViews.KernelLog(showLevel: false).FormatRow(rec));
        Assert.Equal("kern   :warn  : [    5.123456] hello", LinuxListViews.KernelLog(showLevel: true).FormatRow(rec));
        Assert.Equal("30     :warn  : [    5.123456] hello", LinuxListViews.KernelLog(showLevel: true).FormatRow(rec with { Facility = 30 }));

        var sym = new KernelSymbol("init_task", 0xffffffff82a0c940, 'D');
        Assert.Equal("ffffffff82a0c940 D init_task", LinuxListViews.Symbols(byAddress: false).FormatRow(new SymbolMatch(sym, 0, null)));
        Assert.Equal("ffffffff82a0c940 D init_task\t[mod]", LinuxListViews.Symbols(byAddress: false).FormatRow(new SymbolMatch(sym, 0, "mod")));
        Assert.Equal("ffffffff82a0c950 init_task+0x10 (D, symbol at ffffffff82a0c940)", LinuxListViews.Symbols(byAddress: true).FormatRow(new SymbolMatch(sym, 0x10, null)));
        Assert.Null(LinuxListViews.Symbols(byAddress: false).Field("offset"));
        Assert.True(LinuxListViews.Symbols(byAddress: false).Field("module")!.OmitWhenNull);
    }

    [Fact]
    public void ColumnsAlignAsCompositeFormattingDoes()
    {
        var r = new Random(99);
        for (int i = 0; i < 500; i++)
        {
            int width = r.Next(-12, 13);
            string text = new('x', r.Next(0, 15));
            var view = new ListView<string>([], [new("A", width, s => s), new("B", 0, _ => "|")]);
            Assert.Equal(string.Format(CultureInfo.InvariantCulture, "{0," + width + "} |", text), view.FormatRow(text));
        }
    }

    [Fact]
    public void FieldNamesAreUnique()
    {
        var e = Assert.Throws<ArgumentException>(() => new ListView<int>([new("a", FieldKind.Integer, i => i), new("a", FieldKind.Integer, i => i)], []));
        Assert.Contains("'a'", e.Message, StringComparison.Ordinal);
    }
}
