using VmState.Events;

namespace VmState.Tests.Events;

/// <summary>The in-process parts of a trace: hit filters, --print specs, escaping of guest strings, the no-op decoder.</summary>
public sealed class TraceFilterAndPrintTests
{
    /// <summary>The captured <c>g</c> reply of <see cref="GdbStubRepliesTests"/>: RDI=ffffcfe0003e3f58, CR3=23a8000.</summary>
    private static X86GdbRegisters Registers(ulong cr3)
    {
        var raw = new byte[X86GdbRegisters.DecodedLength];
        BitConverter.GetBytes(0xffffcfe0003e3f58UL).CopyTo(raw, 5 * 8);
        BitConverter.GetBytes(0x10u).CopyTo(raw, 140);
        BitConverter.GetBytes(cr3).CopyTo(raw, 188 + 16);
        Assert.True(X86GdbRegisters.TryParse(Convert.ToHexStringLower(raw), out X86GdbRegisters? regs));
        return regs!;
    }

    private static BreakpointHit Hit(int vcpu = 1, int? pid = 110, int? tgid = 110, string? comm = "vmsmarker", ulong cr3 = 0x23a8000) => new()
    {
        Sequence = 1,
        Time = DateTimeOffset.UnixEpoch,
        Breakpoint = new TraceBreakpoint(0xffffffff81000000, "f", false),
        Vcpu = vcpu,
        Registers = Registers(cr3),
        Pid = pid,
        Tgid = tgid,
        Comm = comm,
    };

    [Fact]
    public void EveryConditionGivenMustHold()
    {
        Assert.True(new TraceHitFilter().IsEmpty);
        Assert.True(new TraceHitFilter().Matches(Hit()));
        Assert.True(new TraceHitFilter { Pid = 110, Comm = "vmsmarker", Vcpu = 1, Cr3 = 0x23a8000 }.Matches(Hit()));
        Assert.False(new TraceHitFilter { Pid = 111 }.Matches(Hit()));
        Assert.False(new TraceHitFilter { Comm = "vmsmarke" }.Matches(Hit()));
        Assert.False(new TraceHitFilter { Vcpu = 0 }.Matches(Hit()));
        Assert.False(new TraceHitFilter { Pid = 110, Vcpu = 0 }.Matches(Hit()));

        // A thread matches its process's pid (tgid) too; an unreadable task matches no pid or comm.
        Assert.True(new TraceHitFilter { Pid = 100 }.Matches(Hit(pid: 101, tgid: 100)));
        Assert.False(new TraceHitFilter { Pid = 110 }.Matches(Hit(pid: null, tgid: null, comm: null)));
        Assert.False(new TraceHitFilter { Comm = "vmsmarker" }.Matches(Hit(pid: null, tgid: null, comm: null)));
    }

    [Fact]
    public void Cr3IsComparedWithoutPcidPtiAndNoFlushBits()
    {
        // PTI's user copy is bit 12, PCIDs are bits 0-11, bit 63 asks not to flush.
        Assert.True(new TraceHitFilter { Cr3 = 0x23a8000 }.Matches(Hit(cr3: 0x23a9000 | 0x5)));
        Assert.True(new TraceHitFilter { Cr3 = 0x8000_0000_023a_8001 }.Matches(Hit()));
        Assert.False(new TraceHitFilter { Cr3 = 0x23aa000 }.Matches(Hit()));
        Assert.Equal(0x23a8000UL, TraceHitFilter.PageTableRoot(0x8000_0000_023a_9fffUL));
    }

    [Fact]
    public void PrintSpecsNameRegisterArgumentsAndFormats()
    {
        TracePrintSpec spec = TracePrintSpec.Parse("arg0, arg1:str,arg2:d,arg5:u");
        Assert.Equal(["arg0", "arg1:str", "arg2:d", "arg5:u"], spec.Items.Select(i => i.Name));
        Assert.Equal([0, 1, 2, 5], spec.Items.Select(i => i.Argument));
        Assert.Equal([TracePrintFormat.Hex, TracePrintFormat.String, TracePrintFormat.Signed, TracePrintFormat.Unsigned], spec.Items.Select(i => i.Format));
        Assert.Equal(("arg0", "0xffffcfe0003e3f58"), TracePrintSpec.Parse("arg0").Format(Hit())[0]);
        Assert.Equal(("arg0:d", "-52913993007272"), TracePrintSpec.Parse("arg0:d").Format(Hit())[0]);
    }

    [Theory]
    [InlineData("")]
    [InlineData("arg6")]
    [InlineData("arg")]
    [InlineData("rdi")]
    [InlineData("arg0:s")]
    [InlineData("arg0,,arg1")]
    [InlineData("arg10")]
    public void BadPrintSpecsAreRejectedWithTheItem(string text)
    {
        FormatException e = Assert.Throws<FormatException>(() => TracePrintSpec.Parse(text));
        Assert.Contains("--print item", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GuestStringsCannotReachTheTerminalRaw()
    {
        Assert.Equal("/bin/echo", TracePrintSpec.Escape("/bin/echo"u8));
        Assert.Equal(@"a\nb\x1b[2J\""\\\xff\t\r\x00", TracePrintSpec.Escape([.. "a\nb\x1b[2J\"\\"u8, 0xff, (byte)'\t', (byte)'\r', 0]));
    }

    [Theory]
    [InlineData("0f1f440000415541", 5)] // the ftrace site of __x64_sys_clock_nanosleep on Debian's 6.1
    [InlineData("f30f1efa0f1f4400", 4)] // endbr64
    [InlineData("660f1f440000", 6)]
    [InlineData("0f1f8000000000", 7)]
    [InlineData("9055", 1)]
    [InlineData("6690", 2)]
    [InlineData("e8aabbccdd", 0)] // the ftrace site once tracing patched it into a call
    [InlineData("cc1f440000", 0)] // an int3 at the start: not decoded as a no-op at insertion
    [InlineData("55", 0)]
    [InlineData("0f1f44", 0)]
    [InlineData("", 0)]
    public void OnlyNoOpsAreSteppedOverByMovingRip(string hex, int length) =>
        Assert.Equal(length, GdbTraceSession.NoopLength(Convert.FromHexString(hex)));

    [Theory]
    [InlineData(0xffffffff81000000UL, true)]
    [InlineData(0xffff888000000000UL, true)] // 4-level direct map
    [InlineData(0xff11000000000000UL, true)] // 5-level direct map
    [InlineData(0xff87ebd70040ff58UL, true)] // a 5-level kernel stack (seen at a hit on the 5-level + PTI guest)
    [InlineData(0x00007ffc5f8f3080UL, false)]
    [InlineData(0x00000000004ab0f8UL, false)]
    [InlineData(0x00ff000000000000UL, false)] // 5-level user space
    public void KernelAddressesAreTheUpperHalfInBothPagingModes(ulong address, bool kernel) =>
        Assert.Equal(kernel, BreakpointHit.IsKernelAddress(address));

    [Fact]
    public void AHitMadeWithoutAKernelSaysItCannotReadMemory()
    {
        BreakpointHit hit = Hit();
        Assert.Throws<InvalidOperationException>(() => hit.ReadMemory(0x1000, new byte[8]));
    }
}
