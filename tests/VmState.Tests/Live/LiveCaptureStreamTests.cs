using System.Net.Sockets;
using VmState.Live;

namespace VmState.Tests.Live;

/// <summary>
/// The stream a capture's consumer reads: every byte QEMU sent, in order, whatever the read sizes; forward-only and
/// read-only; its size counted; the rest drained; a writer that stops early is the end; disposal does not wait on the
/// writer.
/// </summary>
public sealed class LiveCaptureStreamTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("vmstate-capture-test-");

    public void Dispose() => _dir.Delete(recursive: true);

    /// <summary>A connected pair of UNIX stream sockets: (QEMU's end, ours).</summary>
    private (Socket Writer, Socket Reader) Pair()
    {
        string path = Path.Combine(_dir.FullName, $"{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var writer = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        writer.Connect(new UnixDomainSocketEndPoint(path));
        return (writer, listener.Accept());
    }

    private static byte[] Data(int length, int seed)
    {
        byte[] data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static Task SendAsync(Socket writer, byte[] data, int seed) => Task.Run(() =>
    {
        // Writes of uneven sizes, as QEMU's buffered file flushes them.
        var rng = new Random(seed);
        int sent = 0;
        while (sent < data.Length)
        {
            int n = Math.Min(data.Length - sent, rng.Next(1, 300_000));
            writer.Send(data.AsSpan(sent, n));
            sent += n;
        }

        writer.Shutdown(SocketShutdown.Send);
        writer.Dispose();
    });

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task EveryByteArrivesInOrderWhateverTheReadSizes(int seed)
    {
        byte[] data = Data((40 << 20) + 12345, seed);
        (Socket writer, Socket reader) = Pair();
        Task sending = SendAsync(writer, data, seed);
        using var stream = new CaptureStream(reader);
        Assert.True(stream.CanRead);
        Assert.False(stream.CanSeek);
        Assert.False(stream.CanWrite);
        Assert.Throws<NotSupportedException>(() => stream.Seek(0, SeekOrigin.Begin));
        Assert.Throws<NotSupportedException>(() => stream.Write([1], 0, 1));
        Assert.Throws<NotSupportedException>(() => stream.Length);

        byte[] got = new byte[data.Length];
        var rng = new Random(seed + 100);
        int at = 0;
        while (true)
        {
            int want = rng.Next(1, 3 << 20);
            Memory<byte> into = got.AsMemory(at, Math.Min(want, got.Length - at));
            // Both the asynchronous and the synchronous read, mixed.
            int n = rng.Next(2) == 0 ? await stream.ReadAsync(into) : stream.Read(into.Span);
            if (n == 0)
            {
                break;
            }

            at += n;
            Assert.Equal(at, stream.Position);
            if (at == got.Length)
            {
                Assert.Equal(0, await stream.ReadAsync(new byte[16]));
                break;
            }
        }

        await sending;
        Assert.Equal(data.Length, at);
        Assert.True(data.AsSpan().SequenceEqual(got));
    }

    [Fact]
    public async Task WhatTheConsumerLeavesIsDrainedAndCounted()
    {
        byte[] data = Data(9 << 20, 3);
        (Socket writer, Socket reader) = Pair();
        Task sending = SendAsync(writer, data, 3);
        using var stream = new CaptureStream(reader);
        byte[] head = new byte[1000];
        await stream.ReadExactlyAsync(head);
        Assert.True(data.AsSpan(0, 1000).SequenceEqual(head));
        await stream.DrainAsync(CancellationToken.None);
        await sending;
        Assert.Equal(data.Length, stream.Position);
        Assert.Equal(0, stream.Read(new byte[1]));
    }

    [Fact]
    public async Task DisposingWhileTheWriterStillWritesDoesNotHangAndTheWriterSeesTheEnd()
    {
        (Socket writer, Socket reader) = Pair();
        var stream = new CaptureStream(reader);
        // Far more than the stream buffers (32 MiB): the writer blocks until the reader goes away.
        Task<Exception?> sending = Task.Run<Exception?>(() =>
        {
            byte[] chunk = new byte[1 << 20];
            try
            {
                for (int i = 0; i < 256; i++)
                {
                    writer.Send(chunk);
                }

                return null;
            }
            catch (SocketException e)
            {
                return e;
            }
        });
        byte[] some = new byte[4096];
        await stream.ReadExactlyAsync(some);
        stream.Dispose();
        reader.Dispose();
        Exception? error = await sending.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.IsType<SocketException>(error);
        writer.Dispose();
    }
}
