using Microsoft.Win32.SafeHandles;
using VmState.Live;

namespace VmState.Tests.Live;

/// <summary>
/// The stream a capture's consumer reads, over the pipe QEMU writes to: every byte sent, in order, whatever the read
/// sizes; forward-only and read-only; its size counted; the rest drained; disposal while the writer still writes
/// neither hangs nor leaves the writer blocked (it gets EPIPE).
/// </summary>
public sealed class LiveCaptureStreamTests
{
    private static byte[] Data(int length, int seed)
    {
        byte[] data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>Writes of uneven sizes, as QEMU's buffered file flushes them, then the writer's close (the end).</summary>
    private static Task SendAsync(SafeFileHandle write, byte[] data, int seed) => Task.Run(() =>
    {
        using var pipe = new FileStream(write, FileAccess.Write, 0);
        var rng = new Random(seed);
        int sent = 0;
        while (sent < data.Length)
        {
            int n = Math.Min(data.Length - sent, rng.Next(1, 300_000));
            pipe.Write(data.AsSpan(sent, n));
            sent += n;
        }
    });

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task EveryByteArrivesInOrderWhateverTheReadSizes(int seed)
    {
        byte[] data = Data((40 << 20) + 12345, seed);
        (SafeFileHandle read, SafeFileHandle write) = CapturePipe.Create();
        Task sending = SendAsync(write, data, seed);
        using var stream = new CaptureStream(read);
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
        (SafeFileHandle read, SafeFileHandle write) = CapturePipe.Create();
        Task sending = SendAsync(write, data, 3);
        using var stream = new CaptureStream(read);
        byte[] head = new byte[1000];
        await stream.ReadExactlyAsync(head);
        Assert.True(data.AsSpan(0, 1000).SequenceEqual(head));
        await stream.DrainAsync(CancellationToken.None);
        await sending;
        Assert.Equal(data.Length, stream.Position);
        Assert.Equal(0, stream.Read(new byte[1]));
    }

    [Fact]
    public async Task DisposingWhileTheWriterStillWritesDoesNotHangAndTheWriterGetsAnError()
    {
        (SafeFileHandle read, SafeFileHandle write) = CapturePipe.Create();
        var stream = new CaptureStream(read);
        // Far more than the stream buffers (32 MiB): the writer blocks until the reader goes away.
        Task<Exception?> sending = Task.Run<Exception?>(() =>
        {
            using var pipe = new FileStream(write, FileAccess.Write, 0);
            byte[] chunk = new byte[1 << 20];
            try
            {
                for (int i = 0; i < 256; i++)
                {
                    pipe.Write(chunk);
                }

                return null;
            }
            catch (IOException e)
            {
                return e;
            }
        });
        byte[] some = new byte[4096];
        await stream.ReadExactlyAsync(some);
        await stream.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Exception? error = await sending.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.IsType<IOException>(error);
    }
}
