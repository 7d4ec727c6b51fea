using System.Text;
using VmState.Events;
using VmState.Live;

namespace VmState.Tests.Events;

/// <summary>The parsers a trace session applies to what QEMU's gdbstub sends (replies captured from QEMU 7.2).</summary>
public sealed class GdbStubRepliesTests
{
    /// <summary>
    /// A real <c>g</c> reply of QEMU 7.2 (TCG, qemu64) at a breakpoint on __x64_sys_clock_nanosleep, cut after EFER;
    /// <c>info registers</c> showed RIP=ffffffff9f761700 RFL=246 CS=10 SS=18 FS=32e76380 GS=ffff88a51f200000
    /// CR0=80050033 CR2=7ffc5f8f3080 CR3=23a8000 CR4=6f0 EFER=d01 RAX=e6 RDI=ffffcfe0003e3f58 RSP=ffffcfe0003e3d40.
    /// </summary>
    private const string CapturedG =
        "e600000000000000583f3e00e0cfffff0000000000000000ffffffffffffffffe600000000000000583f3e00e0cfffff483f3e00e0cfffff403d3e00e0cfffff"
        + "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        + "0017769fffffffff46020000100000001800000000000000000000000000000000000000"
        + "8063e732000000000000201fa588ffff0000000000000000330005800000000080308f5ffc7f000000803a0200000000f0060000000000000100000000000000010d000000000000"
        + "00000000000000000000";

    [Theory]
    [InlineData("T05thread:01;", 'T', 5, 1, null, 0UL)]
    [InlineData("T05thread:0a;", 'T', 5, 10, null, 0UL)]
    [InlineData("T02thread:02;", 'T', 2, 2, null, 0UL)]
    [InlineData("T05thread:p1.3;", 'T', 5, 3, null, 0UL)]
    [InlineData("T05thread:01;watch:ffffffff81000040;", 'T', 5, 1, "watch", 0xffffffff81000040UL)]
    [InlineData("T05thread:01;awatch:1000;", 'T', 5, 1, "awatch", 0x1000UL)]
    [InlineData("T05swbreak:;thread:01;", 'T', 5, 1, null, 0UL)]
    [InlineData("S05", 'S', 5, null, null, 0UL)]
    [InlineData("W00;process:1", 'W', 0, null, null, 0UL)]
    public void StopRepliesParse(string text, char kind, int signal, int? thread, string? watchKind, ulong watchAddress)
    {
        Assert.True(GdbStopReply.TryParse(text, out GdbStopReply reply));
        Assert.Equal(kind, reply.Kind);
        Assert.Equal(signal, reply.Signal);
        Assert.Equal(thread, reply.Thread);
        Assert.Equal(thread is int t ? t - 1 : null, reply.Vcpu);
        Assert.Equal(watchKind, reply.WatchKind);
        Assert.Equal(watchAddress, reply.WatchAddress);
    }

    [Theory]
    [InlineData("OK")]
    [InlineData("E22")]
    [InlineData("")]
    [InlineData("T")]
    [InlineData("T0")]
    [InlineData("TZZthread:01;")]
    [InlineData("T05thread:;")]
    [InlineData("T05thread:zz;")]
    [InlineData("T05thread")]
    [InlineData("T05watch:;")]
    [InlineData("T05thread:11111111111111111;")]
    [InlineData("PacketSize=1000;qXfer:features:read+")]
    public void OtherRepliesAreNotStopReplies(string text) => Assert.False(GdbStopReply.TryParse(text, out _));

    [Fact]
    public void OnlySigtrapIsATrap()
    {
        Assert.True(GdbStopReply.TryParse("T05thread:01;", out GdbStopReply trap));
        Assert.True(trap.IsTrap);
        Assert.True(GdbStopReply.TryParse("T02thread:01;", out GdbStopReply pause));
        Assert.False(pause.IsTrap);
    }

    [Fact]
    public void RegistersDecodeAsQemuShowsThem()
    {
        Assert.True(X86GdbRegisters.TryParse(CapturedG, out X86GdbRegisters? r));
        Assert.NotNull(r);
        Assert.Equal(0xe6UL, r.Rax);
        Assert.Equal(0xffffcfe0003e3f58UL, r.Rbx);
        Assert.Equal(0xffffffffffffffffUL, r.Rdx);
        Assert.Equal(0xffffcfe0003e3f58UL, r.Rdi);
        Assert.Equal(0xffffcfe0003e3f48UL, r.Rbp);
        Assert.Equal(0xffffcfe0003e3d40UL, r.Rsp);
        Assert.Equal(0xffffffff9f761700UL, r.Rip);
        Assert.Equal(0x246u, r.Eflags);
        Assert.Equal(0x10u, r.Cs);
        Assert.Equal(0x18u, r.Ss);
        Assert.True(r.IsKernelMode);
        Assert.Equal(0x32e76380UL, r.FsBase);
        Assert.Equal(0xffff88a51f200000UL, r.GsBase);
        Assert.Equal(0UL, r.KernelGsBase);
        Assert.Equal(0x80050033UL, r.Cr0);
        Assert.Equal(0x7ffc5f8f3080UL, r.Cr2);
        Assert.Equal(0x23a8000UL, r.Cr3);
        Assert.Equal(0x6f0UL, r.Cr4);
        Assert.Equal(0xd01UL, r.Efer);
        Assert.Equal(r.Rdi, r.Argument(0));
        Assert.Equal(r.Rsi, r.Argument(1));
        Assert.Equal(r.R9, r.Argument(5));
        Assert.Throws<ArgumentOutOfRangeException>(() => r.Argument(6));
        Assert.Equal("r8", X86GdbRegisters.GeneralName(8));
    }

    [Theory]
    [InlineData("E01")]
    [InlineData("")]
    [InlineData("00")]
    public void ShortOrErrorRegisterRepliesAreRefused(string text) => Assert.False(X86GdbRegisters.TryParse(text, out _));

    [Fact]
    public void NonHexRegisterRepliesAreRefused()
    {
        string bad = "zz" + CapturedG[2..];
        Assert.False(X86GdbRegisters.TryParse(bad, out _));
        Assert.False(X86GdbRegisters.TryParse(CapturedG.AsSpan(0, (X86GdbRegisters.DecodedLength * 2) - 2), out _));
    }

    [Fact]
    public void FramingSkipsAcksAndBadChecksumsAndWaitsForWholePackets()
    {
        byte[] data = Encoding.ASCII.GetBytes("+$T05thread:01;#00+$OK#9a$T05thr");
        Assert.Equal(1, GdbPacketFraming.TryTake(data, out string? payload, out int consumed));
        Assert.Equal("OK", payload);
        Assert.Equal("+$T05thread:01;#00+$OK#9a".Length, consumed);
        Assert.Equal(0, GdbPacketFraming.TryTake(data.AsSpan(consumed), out payload, out int more));
        Assert.Null(payload);
        Assert.Equal(0, more);
    }

    [Fact]
    public void FramingTakesAStopReplyWithItsChecksum()
    {
        byte[] data = Encoding.ASCII.GetBytes("$T05thread:01;#07");
        Assert.Equal(1, GdbPacketFraming.TryTake(data, out string? payload, out int consumed));
        Assert.Equal("T05thread:01;", payload);
        Assert.Equal(data.Length, consumed);
    }

    [Theory]
    [InlineData("disconnected:tcp:127.0.0.1:23999,server=on", "127.0.0.1", 23999, null, false)]
    [InlineData("tcp:127.0.0.1:23999,server=on <-> 127.0.0.1:45604", "127.0.0.1", 23999, "127.0.0.1:45604", false)]
    [InlineData("disconnected:tcp:0.0.0.0:1234,server=on", "127.0.0.1", 1234, null, true)]
    [InlineData("disconnected:tcp::::1234,server=on", "127.0.0.1", 1234, null, true)]
    [InlineData("disconnected:tcp:[::1]:1234,server=on", "::1", 1234, null, false)]
    [InlineData("disconnected:tcp:192.168.1.5:1234,server=on", "192.168.1.5", 1234, null, true)]
    public void StubChardevsParse(string filename, string host, int port, string? peer, bool beyondLoopback)
    {
        Assert.True(GdbStubChardev.TryParse(filename, out GdbStubChardev? stub));
        Assert.Equal(host, stub!.Host);
        Assert.Equal(port, stub.Port);
        Assert.Equal(peer, stub.Peer);
        Assert.Equal(peer is not null, stub.InUse);
        Assert.Equal(beyondLoopback, stub.ListensBeyondLoopback);

        // The tracer and the AArch64 live register reader give the same warning for an exposed stub, and none otherwise.
        if (beyondLoopback)
        {
            Assert.Contains($"port {port}, not only on loopback", stub.ExposureWarning, StringComparison.Ordinal);
            Assert.Contains(stub.Listen.Length == 0 ? "listens on every interface " : $"listens on {stub.Listen} ", stub.ExposureWarning, StringComparison.Ordinal);
        }
        else
        {
            Assert.Null(stub.ExposureWarning);
        }
    }

    [Theory]
    [InlineData("disconnected:unix:/tmp/vmstate-gdb-x1/gdb.sock,server=on", null)]
    [InlineData("unix:/tmp/vmstate-gdb-x1/gdb.sock,server=on", "a client on the socket")]
    public void UnixSocketStubsParse(string filename, string? peer)
    {
        Assert.True(GdbStubChardev.TryParse(filename, out GdbStubChardev? stub));
        Assert.Equal("/tmp/vmstate-gdb-x1/gdb.sock", stub!.SocketPath);
        Assert.Equal("unix:/tmp/vmstate-gdb-x1/gdb.sock", stub.Endpoint);
        Assert.Equal(peer, stub.Peer);
        Assert.Equal(peer is not null, stub.InUse);
        Assert.False(stub.ListensBeyondLoopback);
        Assert.Equal("/tmp/vmstate-gdb-x1", GdbTraceSession.PrivateDirectoryOf(stub.Endpoint));
    }

    [Theory]
    [InlineData("unix:/run/user/gdb.sock")]
    [InlineData("127.0.0.1:1234")]
    public void OnlyTheSessionsOwnPrivateDirectoriesAreRemoved(string endpoint) => Assert.Null(GdbTraceSession.PrivateDirectoryOf(endpoint));

    [Theory]
    [InlineData("gdb")]
    [InlineData("disconnected:unix:,server=on")]
    [InlineData("tcp:127.0.0.1:0,server=on")]
    [InlineData("tcp:127.0.0.1:99999")]
    [InlineData("tcp:nohost")]
    public void OtherChardevsAreNotStubs(string filename) => Assert.False(GdbStubChardev.TryParse(filename, out _));
}
