using System.Buffers;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Microsoft.Win32.SafeHandles;

namespace VmState.Live;

/// <summary>
/// The migration stream of a capture as its consumer sees it: read-only and forward-only, counting the bytes read
/// (<see cref="Position"/>) so the capture can report its size. A thread of its own drains the pipe QEMU writes to
/// into up to 32 MiB of pooled 1 MiB buffers, so QEMU's migration thread is not held up by the consumer's
/// asynchronous wake-ups. The read end is non-blocking and waited on with poll(2) in short slices, so disposal stops
/// the thread without closing a descriptor under a blocked read.
/// </summary>
internal sealed class CaptureStream : Stream
{
    private const int ChunkSize = 1 << 20;
    private readonly SafeFileHandle _pipe;
    private readonly Channel<(byte[] Buffer, int Length)> _chunks = Channel.CreateBounded<(byte[], int)>(new BoundedChannelOptions(32) { SingleReader = true, SingleWriter = true });
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _pump;
    private byte[]? _current;
    private int _offset;
    private int _length;
    private long _position;
    private bool _ended;

    /// <summary>Reads <paramref name="pipe"/> (the read end; owned, closed on disposal) until its writers close it.</summary>
    public CaptureStream(SafeFileHandle pipe)
    {
        _pipe = pipe;
        int fd = (int)pipe.DangerousGetHandle();
        int flags = NativeMethods.fcntl(fd, NativeMethods.FGetfl, 0);
        if (flags < 0 || NativeMethods.fcntl(fd, NativeMethods.FSetfl, flags | NativeMethods.ONonblock) < 0)
        {
            throw new IOException($"cannot make the capture pipe non-blocking: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        _pump = new Thread(Pump) { IsBackground = true, Name = "vmstate capture" };
        _pump.Start();
    }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException("a capture stream's length is known only at its end");

    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException("a capture stream is forward-only");
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        ValueTask fill = Fill(default);
        if (fill.IsCompleted)
        {
            fill.GetAwaiter().GetResult();
        }
        else
        {
            fill.AsTask().GetAwaiter().GetResult();
        }

        return Take(buffer);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await Fill(cancellationToken).ConfigureAwait(false);
        return Take(buffer.Span);
    }

    /// <summary>Reads and drops what the consumer left, up to the end QEMU marks by closing the connection.</summary>
    public async Task DrainAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            await Fill(cancellationToken).ConfigureAwait(false);
            if (_ended)
            {
                return;
            }

            _position += _length - _offset;
            _offset = _length;
        }
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("a capture stream is forward-only");

    public override void SetLength(long value) => throw new NotSupportedException("a capture stream is read-only");

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("a capture stream is read-only");

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _stop.Cancel();
            _pump.Join();
            Return();
            while (_chunks.Reader.TryRead(out (byte[] Buffer, int Length) chunk))
            {
                ArrayPool<byte>.Shared.Return(chunk.Buffer);
            }

            // Closing the read end now: a QEMU still writing gets EPIPE and fails the migration.
            _pipe.Dispose();
            _stop.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>Makes the current chunk non-empty, or marks the end; the stream's errors surface here.</summary>
    private async ValueTask Fill(CancellationToken cancellationToken)
    {
        if (_offset < _length || _ended)
        {
            return;
        }

        Return();
        try
        {
            (_current, _length) = await _chunks.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            _offset = 0;
        }
        catch (ChannelClosedException e) when (e.InnerException is null)
        {
            _ended = true;
        }
        catch (ChannelClosedException e)
        {
            throw new IOException($"reading the migration stream from QEMU failed: {e.InnerException!.Message}", e.InnerException);
        }
    }

    private int Take(Span<byte> destination)
    {
        if (_ended)
        {
            return 0;
        }

        int n = Math.Min(destination.Length, _length - _offset);
        _current.AsSpan(_offset, n).CopyTo(destination);
        _offset += n;
        _position += n;
        return n;
    }

    private void Return()
    {
        if (_current is not null)
        {
            ArrayPool<byte>.Shared.Return(_current);
            _current = null;
            _offset = _length = 0;
        }
    }

    /// <summary>
    /// The pipe drained: a chunk is handed over when it is full or the pipe is empty, so the consumer gets up to 1 MiB
    /// per hand-over; an empty pipe is waited on with poll(2) in 100 ms slices (checking for disposal between them).
    /// </summary>
    private unsafe void Pump()
    {
        Exception? failure = null;
        int fd = (int)_pipe.DangerousGetHandle();
        byte[]? buffer = null;
        int n = 0;
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                buffer ??= ArrayPool<byte>.Shared.Rent(ChunkSize);
                nint got;
                fixed (byte* p = buffer)
                {
                    got = NativeMethods.read(fd, p + n, (nuint)(buffer.Length - n));
                }

                if (got > 0)
                {
                    n += (int)got;
                    if (n < buffer.Length)
                    {
                        continue;
                    }
                }
                else if (got < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == NativeMethods.EIntr)
                    {
                        continue;
                    }

                    if (errno != NativeMethods.EAgain)
                    {
                        throw new IOException($"reading the migration stream failed: {Marshal.GetPInvokeErrorMessage(errno)}");
                    }

                    if (n == 0)
                    {
                        var poll = new NativeMethods.PollFd { Fd = fd, Events = NativeMethods.PollIn };
                        _ = NativeMethods.poll(&poll, 1, 100);
                        continue;
                    }
                }

                // Full, the pipe is empty for now, or its end (got == 0): hand over what there is.
                if (n > 0)
                {
                    while (!_chunks.Writer.TryWrite((buffer, n)))
                    {
                        if (!_chunks.Writer.WaitToWriteAsync(_stop.Token).AsTask().GetAwaiter().GetResult())
                        {
                            return;
                        }
                    }

                    buffer = null;
                    n = 0;
                }

                if (got == 0)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Disposed while the consumer was not reading.
        }
        catch (IOException e)
        {
            failure = e;
        }
        finally
        {
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            _chunks.Writer.TryComplete(failure);
        }
    }
}
