using System.Text;
using System.Text.Json;
using VmState.Events;
using VmState.Linux;

namespace VmState.Tests.Events;

/// <summary>
/// The in-process parts of the typed OS events and of the accelerator checks: the system call table decoded from
/// sys_call_table's pointers and kallsyms, the exec argument area, query-kvm answers and the four debug
/// registers of KVM.
/// </summary>
public sealed class OsEventDecodingTests
{
    private const ulong Text = 0xffffffff81000000;

    /// <summary>
    /// Wrappers as Linux 6.1's System.map has them: read (0), write (1), an unimplemented number (2, at
    /// __x64_sys_ni_syscall), getppid (3); an alias at write's address that is not a wrapper, and data after the table.
    /// </summary>
    private static Kallsyms Symbols() => Kallsyms.FromList(
        [
            ("__x64_sys_read", 'T', Text + 0x100),
            ("ksys_write_alias", 'T', Text + 0x200),
            ("__x64_sys_write", 'T', Text + 0x200),
            ("__x64_sys_ni_syscall", 'T', Text + 0x300),
            ("__x64_sys_getppid", 'T', Text + 0x400),
            ("sys_call_table", 'D', Text + 0x1000000),
            ("vdso_mapping", 'd', Text + 0x1000020),
        ],
        "test");

    [Fact]
    public void TheTableIsNamedFromItsWrappersAndEndsAtTheFirstEntryThatIsNotOne()
    {
        SyscallTable table = SyscallTable.FromEntries([Text + 0x100, Text + 0x200, Text + 0x300, Text + 0x400, 0xffffffff82001240, Text + 0x100], Symbols());
        Assert.Equal(4, table.Count);
        Assert.Equal("read", table.Name(0));
        Assert.Equal("write", table.Name(1));
        Assert.Null(table.Name(2));
        Assert.Equal("getppid", table.Name(3));
        Assert.Null(table.Name(4));
        Assert.Null(table.Name(-1));
        Assert.Equal(3, table.Number("getppid"));
        Assert.Equal(-1, table.Number("vdso_mapping"));
    }

    [Fact]
    public void ATableThatDoesNotStartWithAWrapperIsAnErrorNamingWhatWasThere()
    {
        KernelDataException e = Assert.Throws<KernelDataException>(() => SyscallTable.FromEntries([Text + 0x1000020, Text + 0x100], Symbols(), Text + 0x1000000));
        Assert.Contains("sys_call_table", e.Message, StringComparison.Ordinal);
        Assert.Contains("vdso_mapping", e.Message, StringComparison.Ordinal);
        Assert.Throws<KernelDataException>(() => SyscallTable.FromEntries([], Symbols()));
    }

    [Fact]
    public void ArgumentsAreTheFirstArgcStringsAndCutOnesAreMarked()
    {
        byte[] area = Encoding.ASCII.GetBytes("/bin/echo\0vmstate-exec-two\0alpha\0beta\0PATH=/bin\0/bin/echo\0");
        (List<byte[]> argv, bool truncated) = ExecTracer.SplitArguments(area, 4);
        Assert.Equal(["/bin/echo", "vmstate-exec-two", "alpha", "beta"], argv.Select(a => Encoding.ASCII.GetString(a)));
        Assert.False(truncated);

        // The read ended inside the third string (unreadable page or the byte limit).
        (argv, truncated) = ExecTracer.SplitArguments(area.AsSpan(0, 30), 4);
        Assert.Equal(2, argv.Count);
        Assert.True(truncated);

        (argv, truncated) = ExecTracer.SplitArguments(new byte[ExecTracer.MaxArgs * 2], ExecTracer.MaxArgs * 2);
        Assert.Equal(ExecTracer.MaxArgs, argv.Count);
        Assert.True(truncated);

        (argv, truncated) = ExecTracer.SplitArguments(area, 0);
        Assert.Empty(argv);
        Assert.False(truncated);
    }

    [Theory]
    [InlineData("""{"enabled": true, "present": true}""", true)]
    [InlineData("""{"enabled": false, "present": true}""", false)]
    [InlineData("""{"enabled": false, "present": false}""", false)]
    [InlineData("""{}""", false)]
    [InlineData("""[]""", false)]
    public void QueryKvmSaysWhetherKvmRunsTheGuest(string answer, bool kvm)
    {
        using JsonDocument doc = JsonDocument.Parse(answer);
        Assert.Equal(kvm, GdbTraceSession.IsKvmEnabled(doc.RootElement));
    }

    [Fact]
    public void UnderKvmAFifthHardwareBreakpointOrWatchpointIsRefusedAndSoftwareOnesAreNot()
    {
        var set = new List<TraceBreakpoint>
        {
            new(0x1000, "a", true) { Kind = TraceEventKind.WriteWatch, Length = 8 },
            new(0x2000, "b", true) { Kind = TraceEventKind.ReadWatch, Length = 4 },
            new(Text, "c", true),
            new(Text + 0x10, "d", false),
        };
        var fourth = new TraceBreakpoint(0x3000, "e", true) { Kind = TraceEventKind.AccessWatch, Length = 2 };
        GdbTraceSession.CheckDebugRegisters(true, set, fourth, "access watchpoint");
        set.Add(fourth);

        var fifth = new TraceBreakpoint(0x4000, "g_watch", true) { Kind = TraceEventKind.WriteWatch, Length = 8 };
        InvalidOperationException e = Assert.Throws<InvalidOperationException>(() => GdbTraceSession.CheckDebugRegisters(true, set, fifth, "write watchpoint"));
        Assert.Contains("write watchpoint at g_watch (0x4000)", e.Message, StringComparison.Ordinal);
        Assert.Contains("4 debug registers", e.Message, StringComparison.Ordinal);

        // Software breakpoints need no debug register; TCG has no limit; a removed one frees its register.
        GdbTraceSession.CheckDebugRegisters(true, set, new TraceBreakpoint(Text + 0x20, "s", false), "software breakpoint");
        GdbTraceSession.CheckDebugRegisters(false, set, fifth, "write watchpoint");
        set[0].Active = false;
        GdbTraceSession.CheckDebugRegisters(true, set, fifth, "write watchpoint");
    }

    [Fact]
    public void TheSealedEndbrIsANoOpToStepOver()
    {
        Assert.Equal(4, GdbTraceSession.NoopLength([0x66, 0x0F, 0x1F, 0x00, 0x55]));
        Assert.Equal(4, GdbTraceSession.NoopLength([0xF3, 0x0F, 0x1E, 0xFA, 0x55]));
    }
}
