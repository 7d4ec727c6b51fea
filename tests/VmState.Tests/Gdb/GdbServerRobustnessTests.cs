using System.Net.Sockets;
using System.Text;
using VmState.Gdb;

namespace VmState.Tests.Gdb;

/// <summary>Malformed, oversized, abandoned and silent clients end at most themselves, never the server.</summary>
public sealed class GdbServerRobustnessTests
{
    [Theory]
    [InlineData("", "E01")]
    [InlineData("m", "E01")]
    [InlineData("m5000", "E01")]
    [InlineData("m5000,", "E01")]
    [InlineData("m,8", "E01")]
    [InlineData("m5000,0", "E01")]
    [InlineData("mzz,8", "E01")]
    [InlineData("m-1,8", "E01")]
    [InlineData("m10000000000000000,8", "E01")]
    [InlineData("M5000,2", "E01")]
    [InlineData("M5000,2:aa", "E01")]
    [InlineData("M5000,2:aabbcc", "E01")]
    [InlineData("M5000,2:zzzz", "E01")]
    [InlineData("M5000,1:a", "E01")]
    [InlineData("qXfer:features:read:target.xml:0", "E01")]
    [InlineData("qXfer:features:read:target.xml:", "E01")]
    [InlineData("qXfer:features:read:target.xml", "E01")]
    [InlineData("qXfer:features:read:other.xml:0,10", "E00")]
    [InlineData("qXfer:features:read:target.xml:ffffffffffffffff,ffffffffffffffff", "l")]
    [InlineData("qRcmd,7", "E01")]
    [InlineData("qRcmd,zz", "E01")]
    [InlineData("P", "E01")]
    [InlineData("P=", "E01")]
    [InlineData("Pzz=00", "E01")]
    [InlineData("p", "E45")]
    [InlineData("H", "E04")]
    [InlineData("Hx1", "E04")]
    [InlineData("gg", "E01")]
    [InlineData("G", "E22")]
    [InlineData("T", "E04")]
    [InlineData("vCont?", "")]
    [InlineData("Z0,0,1", "")]
    public void EveryMalformedPacketIsAnsweredAndTheServerGoesOn(string packet, string reply)
    {
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions());
        using GdbTestClient c = h.Connect();
        Assert.Equal(reply, c.Send(packet));
        Assert.Equal("0001", c.Send("m5000,2"));
    }

    [Fact]
    public void FramingErrorsAreNakedOrAnsweredAndTheBufferStaysBounded()
    {
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions());
        using GdbTestClient c = h.Connect();

        // A bad checksum, and one that is not hex: NAK ('-') and no reply, so gdb resends.
        c.SendRaw("$m5000,2#00"u8.ToArray());
        Assert.Equal('-', c.ReadAck());
        c.SendRaw("$m5000,2#zz"u8.ToArray());
        Assert.Equal('-', c.ReadAck());
        Assert.Equal("0001", c.Send("m5000,2"));

        // The empty packet: acknowledged, answered with an error.
        c.SendRaw("$#00"u8.ToArray());
        Assert.Equal("E01", c.ReadReply());

        // A packet one byte over the bound is discarded and answered with an error; one at the bound is read.
        string atBound = "M500,3ffb:" + new string('7', 2 * 0x3ffb);
        Assert.Equal(GdbRemoteServer.MaxPacketSize, atBound.Length);
        Assert.Equal("E02", c.Send(atBound + "7"));
        Assert.Equal("0000", c.Send("m500,2"));
        Assert.Equal("OK", c.Send(atBound));
        Assert.Equal("7777", c.Send("m500,2"));

        // A megabyte with no end of packet and then one: still one error, memory bounded by the reader.
        c.SendRaw(Encoding.ASCII.GetBytes("$" + new string('a', 1 << 20) + "#01"));
        Assert.Equal('-', c.ReadAck());

        // An escape at the very end of a packet (its checksum right): malformed.
        c.SendRaw(GdbTestClient.Frame("m5000,2}"));
        Assert.Equal("E01", c.ReadReply());

        // Escaped bytes are decoded: '}' + ('m' ^ 0x20) is 'm'.
        c.SendRaw(GdbTestClient.Frame("}" + (char)('m' ^ 0x20) + "5000,2"));
        Assert.Equal("0001", c.ReadReply());

        Assert.Equal("0001", c.Send("m5000,2"));
    }

    [Fact]
    public void AClientThatResetsWhileRepliesArePendingEndsOnlyItself()
    {
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions());
        for (int round = 0; round < 5; round++)
        {
            using GdbTestClient c = h.Connect(receiveBufferSize: 4096);
            var requests = new StringBuilder();
            for (int i = 0; i < 200; i++)
            {
                requests.Append(Encoding.Latin1.GetString(GdbTestClient.Frame("m0,4000")));
            }

            c.SendRaw(Encoding.Latin1.GetBytes(requests.ToString()));
            c.Tcp.LingerState = new LingerOption(true, 0);
            c.Tcp.Client.Close();

            // The next client gets its turn once the server has dropped the one that went away.
            using GdbTestClient next = h.Connect();
            Assert.Equal("0001", next.Send("m5000,2"));
        }

        Assert.False(h.Listening.IsCompleted);
    }

    [Fact]
    public void TwoHundredConnectionsInARowThenASession()
    {
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions());
        for (int i = 0; i < 200; i++)
        {
            using GdbTestClient c = h.Connect();
            if (i % 2 == 0)
            {
                c.SendRaw("$qSupported"u8.ToArray());
            }
        }

        // The closed connections are noticed one after another; a client arriving while more than MaxQueued of
        // them are still queued is refused by design, so under load the session may take a few tries. What must
        // hold: the server is alive and serves a whole session after the storm.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string reply = string.Empty;
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            try
            {
                using GdbTestClient last = h.Connect();
                reply = last.Send("m5000,2");
                if (reply == "0001")
                {
                    break;
                }
            }
            catch (IOException)
            {
            }

            Thread.Sleep(100);
        }

        Assert.Equal("0001", reply);
    }

    [Fact]
    public void ASecondClientIsRefusedWhileTheFirstIsConnected()
    {
        // The second client is refused after the queue timeout; the third must be admitted within it, however loaded
        // the machine (the first's detach is one round trip), so the timeout is generous.
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions { QueueTimeout = TimeSpan.FromSeconds(2) });
        using GdbTestClient first = h.Connect();
        Assert.Equal("0001", first.Send("m5000,2"));
        using (GdbTestClient second = h.Connect())
        {
            string reply = second.Send("qSupported");
            Assert.StartsWith("E.another gdb client is connected", reply, StringComparison.Ordinal);
            Assert.True(second.IsClosedByServer());
        }

        Assert.Equal("0203", first.Send("m5002,2"));

        // One that connects while the first is still being served waits for its turn (gdb reconnecting after a
        // detach must not be refused because the server has not yet seen the first connection close).
        using GdbTestClient third = h.Connect();
        third.SendRaw(GdbTestClient.Frame("m5000,2"));
        Assert.Equal("OK", first.Send("D"));
        Assert.Equal("0001", third.ReadReply());
    }

    [Fact]
    public void AnIdleClientIsDisconnectedAfterTheTimeout()
    {
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions { IdleTimeout = TimeSpan.FromMilliseconds(300) });
        using GdbTestClient idle = h.Connect();
        Assert.Equal("0001", idle.Send("m5000,2"));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.True(idle.IsClosedByServer());
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(10));

        using GdbTestClient next = h.Connect();
        Assert.Equal("0001", next.Send("m5000,2"));
    }

    [Fact]
    public void AClientThatDoesNotReadItsRepliesIsDisconnectedAfterTheWriteTimeout()
    {
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions { WriteTimeout = TimeSpan.FromMilliseconds(500) });
        using GdbTestClient stuck = h.Connect(receiveBufferSize: 4096);
        byte[] request = GdbTestClient.Frame("m0,4000");
        var stopAt = DateTime.UtcNow + TimeSpan.FromSeconds(20);

        // Requests of 32 KiB replies until the socket buffers are full and the server is stuck writing; it must
        // then give up on this client, which shows as the connection closing under us.
        bool closed = false;
        while (!closed && DateTime.UtcNow < stopAt)
        {
            try
            {
                stuck.SendRaw(request);
            }
            catch (IOException)
            {
                closed = true;
            }

            if (h.Log.ToString().Contains("did not take a reply", StringComparison.Ordinal))
            {
                closed = true;
            }
        }

        Assert.True(closed, "the server kept waiting for a client that does not read");
        using GdbTestClient next = h.Connect();
        Assert.Equal("0001", next.Send("m5000,2"));
    }
}
