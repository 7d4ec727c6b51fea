using System.Net;
using VmState.Gdb;

namespace VmState.Tests.Gdb;

/// <summary>Listening beyond loopback needs a token; with one, nothing works before <c>monitor auth TOKEN</c>.</summary>
public sealed class GdbServerSecurityTests
{
    [Theory]
    [InlineData("127.0.0.1", null, true)]
    [InlineData("127.0.0.5", null, true)]
    [InlineData("::1", null, true)]
    [InlineData("::ffff:127.0.0.1", null, true)]
    [InlineData("0.0.0.0", null, false)]
    [InlineData("::", null, false)]
    [InlineData("192.168.1.10", null, false)]
    [InlineData("0.0.0.0", "s3cret", true)]
    [InlineData("0.0.0.0", "", false)]
    public void ATokenIsRequiredBeyondLoopback(string address, string? token, bool allowed)
    {
        string? problem = GdbServerOptions.CheckListen(IPAddress.Parse(address), token);
        Assert.Equal(allowed, problem is null);
        if (!allowed && token is null)
        {
            Assert.Contains("--token", problem, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void WithATokenNothingIsRevealedBeforeAuthentication()
    {
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions { Token = "s3cret", MaxAuthFailures = 10 });
        using GdbTestClient c = h.Connect();

        // gdb's connection handshake works, so the user gets a prompt to type 'monitor auth' at...
        Assert.Contains("PacketSize", c.Send("qSupported:multiprocess+"), StringComparison.Ordinal);
        Assert.StartsWith("l<?xml", c.Send("qXfer:features:read:target.xml:0,ffff"), StringComparison.Ordinal);
        Assert.StartsWith("T05", c.Send("?"), StringComparison.Ordinal);
        string g = c.Send("g");
        Assert.Equal(X86TargetDescription.Registers.Sum(r => r.Bits / 4), g.Length);
        Assert.All(g, ch => Assert.Equal('0', ch));

        // ...but memory, registers, writes, thread details and monitor commands are refused.
        Assert.Equal("E03", c.Send("m5000,8"));
        Assert.Equal("E03", c.Send("p0"));
        Assert.Equal("E03", c.Send("M5000,1:ff"));
        Assert.Equal("E03", c.Send("P0=0100000000000000"));
        Assert.Equal("E03", c.Send("qThreadExtraInfo,1"));
        Assert.Equal("E03", c.Monitor("edits"));
        Assert.Contains("monitor auth TOKEN", c.Output, StringComparison.Ordinal);
        Assert.Equal("E03", c.Monitor("auth wrong"));
        Assert.Contains("wrong token", c.Output, StringComparison.Ordinal);
        Assert.Empty(h.Server.Edits);

        Assert.Equal("OK", c.Monitor("auth s3cret"));
        Assert.Equal("0001020304050607", c.Send("m5000,8"));
        Assert.Equal("0001000000000000", c.Send("p0"));
    }

    [Fact]
    public void AClientThatDoesNotAuthenticateInTimeIsDisconnected()
    {
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions { Token = "s3cret", AuthTimeout = TimeSpan.FromMilliseconds(500) });
        using (GdbTestClient c = h.Connect())
        {
            // Busy, so the idle timeout (10 minutes) never fires; the authentication deadline does.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            Assert.Throws<EndOfStreamException>(() =>
            {
                while (clock.Elapsed < TimeSpan.FromSeconds(10))
                {
                    c.Send("qSupported");
                    Thread.Sleep(50);
                }
            });
            Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(400), TimeSpan.FromSeconds(10));
        }

        using (GdbTestClient c = h.Connect())
        {
            Assert.Equal("OK", c.Monitor("auth s3cret"));
            Thread.Sleep(700);
            Assert.Equal("00", c.Send("m5000,1"));
        }
    }

    [Fact]
    public void AClientThatKeepsFailingIsDisconnectedAndTheServerServesTheNext()
    {
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions { Token = "s3cret", MaxAuthFailures = 3 });
        using (GdbTestClient c = h.Connect())
        {
            Assert.Equal("E03", c.Monitor("auth a"));
            // Reads, which gdb sends by itself after connecting, are refused without counting; a write counts.
            for (int i = 0; i < 10; i++)
            {
                Assert.Equal("E03", c.Send("m0,1"));
            }

            Assert.Equal("E03", c.Monitor("auth b"));
            Assert.Equal("E03", c.Send("M0,1:00"));
            Assert.True(c.IsClosedByServer());
        }

        using (GdbTestClient c = h.Connect())
        {
            Assert.Equal("E03", c.Send("m5000,1"));

            // 'k' before authentication ends the connection, not the server.
            c.SendRaw(GdbTestClient.Frame("k"));
            Assert.True(c.IsClosedByServer());
        }

        Assert.False(h.Server.KillRequested);

        // Reads alone cannot hold the one client slot forever either.
        using (GdbTestClient c = h.Connect())
        {
            for (int i = 0; i < 256; i++)
            {
                Assert.Equal("E03", c.Send("m0,1"));
            }

            Assert.Equal("E03", c.Send("m0,1"));
            Assert.True(c.IsClosedByServer());
        }

        using (GdbTestClient c = h.Connect())
        {
            Assert.Equal("OK", c.Monitor("auth s3cret"));
            Assert.Equal("00", c.Send("m5000,1"));
        }
    }
}
