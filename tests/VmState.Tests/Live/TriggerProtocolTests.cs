using System.Text;
using VmState.Live;

namespace VmState.Tests.Live;

/// <summary>The trigger port's line protocol (<c>vmstate agent</c> and guest/vmstate-trigger).</summary>
public class TriggerProtocolTests
{
    [Fact]
    public void ARequestCarriesItsNonceAndTheRestOfTheLineAsLabel()
    {
        TriggerRequest r = TriggerRequest.Parse("SNAP 150-1796033174 before upgrade: step 2\r"u8);
        Assert.Equal("150-1796033174", r.Nonce);
        Assert.Equal("before upgrade: step 2", r.Label);
        Assert.Equal("OK 150-1796033174 trigger-0001\n", TriggerRequest.Ok(r.Nonce, "trigger-0001"));
    }

    [Theory]
    [InlineData("", null, "unknown request")]
    [InlineData("HELLO x y", null, "unknown request 'HELLO'")]
    [InlineData("SNAP", null, "unknown request")]
    [InlineData("SNAP  label", null, "nonce must be")]
    [InlineData("SNAP n$1 label", null, "nonce must be")]
    [InlineData("SNAP n1", "n1", "no label")]
    [InlineData("SNAP n1 ", "n1", "no label")]
    [InlineData("SNAP n1 a\u0007b", "n1", "control characters")]
    public void AMalformedRequestIsRefusedWithItsNonceWhenReadable(string line, string? nonce, string message)
    {
        TriggerProtocolException e = Assert.Throws<TriggerProtocolException>(() => TriggerRequest.Parse(Encoding.UTF8.GetBytes(line)));
        Assert.Equal(nonce, e.Nonce);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        Assert.StartsWith($"ERR {nonce ?? "-"} ", TriggerRequest.Error(e.Nonce, e.Message), StringComparison.Ordinal);
    }

    [Fact]
    public void LongNoncesAndLabelsAndInvalidUtf8AreRefused()
    {
        Assert.Contains("nonce must be", Assert.Throws<TriggerProtocolException>(() => TriggerRequest.Parse(Encoding.ASCII.GetBytes($"SNAP {new string('n', 65)} x"))).Message, StringComparison.Ordinal);
        Assert.Contains("longer than 200", Assert.Throws<TriggerProtocolException>(() => TriggerRequest.Parse(Encoding.ASCII.GetBytes($"SNAP n {new string('l', 201)}"))).Message, StringComparison.Ordinal);
        Assert.Contains("UTF-8", Assert.Throws<TriggerProtocolException>(() => TriggerRequest.Parse([.. "SNAP n "u8, 0xff])).Message, StringComparison.Ordinal);
        Assert.Equal(200, TriggerRequest.Parse(Encoding.ASCII.GetBytes($"SNAP n {new string('l', 200)}")).Label.Length);
    }

    [Fact]
    public void AnErrorAnswerStaysOneLine()
    {
        Assert.Equal("ERR n1 disk ? full?\n", TriggerRequest.Error("n1", "disk \n full\r"));
    }

    [Fact]
    public async Task TheLineReaderSkipsAnOverlongLineAndGoesOn()
    {
        byte[] input = [.. "SNAP a one\n"u8, .. Encoding.ASCII.GetBytes(new string('x', 5000)), .. "\nSNAP b two\npartial"u8];
        var reader = new TriggerLineReader(new TrickleStream(input, 7));
        Assert.Equal("SNAP a one", Encoding.ASCII.GetString((await reader.ReadLineAsync())!));
        TriggerProtocolException e = await Assert.ThrowsAsync<TriggerProtocolException>(async () => await reader.ReadLineAsync());
        Assert.Contains("longer than 1024", e.Message, StringComparison.Ordinal);
        Assert.Equal("SNAP b two", Encoding.ASCII.GetString((await reader.ReadLineAsync())!));
        Assert.Null(await reader.ReadLineAsync());
    }

    [Fact]
    public async Task ALineOfExactlyTheBoundIsRead()
    {
        byte[] input = [.. Encoding.ASCII.GetBytes(new string('y', TriggerRequest.MaxLineBytes)), (byte)'\n'];
        var reader = new TriggerLineReader(new MemoryStream(input));
        Assert.Equal(TriggerRequest.MaxLineBytes, (await reader.ReadLineAsync())!.Length);
    }

    [Theory]
    [InlineData("disconnected:unix:/run/vm/t.sock,server=on", "/run/vm/t.sock", null)]
    [InlineData("unix:/run/vm/t.sock,server=on", null, "already has a client")]
    [InlineData("disconnected:unix:/run/vm/t.sock", null, "client socket")]
    [InlineData("disconnected:tcp:127.0.0.1:4444,server=on", null, "not a unix socket")]
    [InlineData("pty:/dev/pts/3", null, "not a unix socket")]
    public void OnlyAUnixServerSocketWithoutClientIsUsable(string filename, string? path, string? error)
    {
        Assert.Equal(path, TriggerChannel.UnixServerPath(filename, out string? why));
        if (error is null)
        {
            Assert.Null(why);
        }
        else
        {
            Assert.Contains(error, why, StringComparison.Ordinal);
        }
    }

    /// <summary>Returns at most a few bytes per read, as a socket may.</summary>
    private sealed class TrickleStream(byte[] data, int chunk) : MemoryStream(data)
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            base.ReadAsync(buffer[..Math.Min(buffer.Length, chunk)], cancellationToken);
    }
}
