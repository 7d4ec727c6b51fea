using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VmState.Live;

/// <summary>
/// The migration stream of a capture as its consumer sees it: read-only and forward-only, counting the bytes read
/// (<see cref="Position"/>) so the capture can report its size. A thread of its own drains the pipe QEMU writes to
/// straight into a ring of <see cref="RingBytes"/> (native memory, touched only as far as it is used), so QEMU's
/// migration thread is not held up while the consumer works on what came before; the consumer copies out of the ring.
/// The two threads hand over through two counters and wake each other only when one of them has to wait: the
/// consumer sleeps until <see cref="WakeBytes"/> have come (or the end, or QEMU has sent nothing for 100 ms), the
/// pump until the ring has room. The read
/// end is non-blocking and waited on with poll(2) in short slices, so disposal stops the thread without closing a
/// descriptor under a blocked read.
/// </summary>
/// <remarks>
/// Measured on QEMU 7.2 (512 MiB guest, 92 MB stream, 2 cores): the hand-over it replaces — a bounded
/// <c>Channel</c> of 1 MiB pooled buffers, each chunk handed over when the pipe was momentarily empty — woke a thread
/// pool thread and then the consumer for every write QEMU made (its 32 KiB buffer), and the capture took 1.33× a
/// background snapshot to a file; see docs/benchmarks.md.
/// </remarks>
internal sealed unsafe class CaptureStream : Stream
{
    /// <summary>The ring's size (a power of two).</summary>
    public const int RingBytes = 8 << 20;

    /// <summary>A waiting consumer is woken when this much has come (or at the end).</summary>
    public const int WakeBytes = 256 << 10;

    /// <summary>The most one read(2) from the pipe asks for.</summary>
    private const int PumpReadBytes = 1 << 20;

    private readonly SafeFileHandle _pipe;
    private readonly Thread _pump;
    private readonly ManualResetEventSlim _dataCame = new(false, 0);
    private readonly ManualResetEventSlim _roomMade = new(false, 0);
    private readonly CancellationTokenSource _stop = new();
    private byte* _ring;

    /// <summary>Bytes the pump has put into the ring, ever (written by the pump only).</summary>
    private long _written;

    /// <summary>Bytes the consumer has taken out of the ring, ever (written by the consumer only).</summary>
    private long _taken;

    /// <summary>How many bytes the consumer waits for (0: it is not waiting).</summary>
    private long _wanted;

    /// <summary>Set by the pump after its last write to <see cref="_written"/>: the end of the stream (or a failure).</summary>
    private volatile bool _ended;

    private Exception? _failure;
    private int _disposed;

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

        _ring = (byte*)NativeMemory.Alloc(RingBytes);
        _pump = new Thread(Pump) { IsBackground = true, Name = "vmstate capture" };
        _pump.Start();
    }

    /// <summary>How many times the consumer had to wait for data (for measurements).</summary>
    public int ConsumerWaits { get; private set; }

    /// <summary>How many times the pump had to wait for room in the ring (for measurements).</summary>
    public int PumpWaits { get; private set; }

    /// <summary>How many times the pump let data gather in the pipe before reading it (for measurements).</summary>
    public int PumpSleeps { get; private set; }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException("a capture stream's length is known only at its end");

    public override long Position
    {
        get => _taken;
        set => throw new NotSupportedException("a capture stream is forward-only");
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (buffer.IsEmpty)
        {
            return 0;
        }

        long available = WaitForData(buffer.Length, CancellationToken.None);
        return available == 0 ? 0 : Take(buffer, available);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        long available = Volatile.Read(ref _written) - _taken;
        if (available > 0 || _ended || buffer.IsEmpty)
        {
            return new ValueTask<int>(Read(buffer.Span));
        }

        // Nothing there yet: wait on a pool thread (a synchronous consumer, like the history writer, never gets here).
        return new ValueTask<int>(Task.Run(
            () =>
            {
                long n = WaitForData(buffer.Length, cancellationToken);
                return n == 0 ? 0 : Take(buffer.Span, n);
            },
            cancellationToken));
    }

    /// <summary>Reads and drops what the consumer left, up to the end QEMU marks by closing the connection.</summary>
    public Task DrainAsync(CancellationToken cancellationToken) => Task.Run(
        () =>
        {
            while (WaitForData(RingBytes, cancellationToken) is long n and > 0)
            {
                Volatile.Write(ref _taken, _taken + n);
                _roomMade.Set();
            }
        },
        cancellationToken);

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("a capture stream is forward-only");

    public override void SetLength(long value) => throw new NotSupportedException("a capture stream is read-only");

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("a capture stream is read-only");

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _stop.Cancel();
            _pump.Join();
            // Closing the read end now: a QEMU still writing gets EPIPE and fails the migration.
            _pipe.Dispose();
            _stop.Dispose();
            _dataCame.Dispose();
            _roomMade.Dispose();
            NativeMemory.Free(_ring);
            _ring = null;
        }

        base.Dispose(disposing);
    }

    /// <summary>
    /// The bytes in the ring, waiting (until <paramref name="want"/> bytes, at most <see cref="WakeBytes"/>, have
    /// come) when it is empty; 0 at the end of the stream. The pump's failure surfaces here.
    /// </summary>
    private long WaitForData(int want, CancellationToken cancellationToken)
    {
        while (true)
        {
            long available = Volatile.Read(ref _written) - _taken;
            if (available > 0)
            {
                return available;
            }

            if (_ended)
            {
                // The pump's last write to _written came before _ended.
                available = Volatile.Read(ref _written) - _taken;
                if (available > 0)
                {
                    return available;
                }

                if (_failure is { } e)
                {
                    throw new IOException($"reading the migration stream from QEMU failed: {e.Message}", e);
                }

                return 0;
            }

            ConsumerWaits++;
            _dataCame.Reset();
            // Interlocked: a full fence between announcing the wait and looking at the counters again, against the
            // pump's publish-then-look (so one of the two always sees the other).
            Interlocked.Exchange(ref _wanted, Math.Clamp(want, 1, WakeBytes));
            if (Volatile.Read(ref _written) - _taken == 0 && !_ended)
            {
                _dataCame.Wait(cancellationToken);
            }

            Interlocked.Exchange(ref _wanted, 0);
        }
    }

    /// <summary>Copies up to <paramref name="available"/> bytes out of the ring and gives their room back to the pump.</summary>
    private int Take(Span<byte> destination, long available)
    {
        int n = (int)Math.Min(destination.Length, available);
        int at = (int)(_taken & (RingBytes - 1));
        int first = Math.Min(n, RingBytes - at);
        new ReadOnlySpan<byte>(_ring + at, first).CopyTo(destination);
        if (first < n)
        {
            new ReadOnlySpan<byte>(_ring, n - first).CopyTo(destination[first..]);
        }

        Volatile.Write(ref _taken, _taken + n);
        _roomMade.Set();
        return n;
    }

    /// <summary>
    /// The pipe drained into the ring: each read(2) goes straight into the free part of the ring, is published at once
    /// and wakes the consumer only when it waits and enough has come; an empty pipe is waited on with poll(2) in 100 ms
    /// slices, a full ring until the consumer makes room (checking for disposal in both).
    /// </summary>
    private void Pump()
    {
        int fd = (int)_pipe.DangerousGetHandle();
        long published = 0;
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                long room = RingBytes - (published - Volatile.Read(ref _taken));
                if (room == 0)
                {
                    PumpWaits++;
                    _roomMade.Reset();
                    if (RingBytes - (published - Volatile.Read(ref _taken)) == 0)
                    {
                        _roomMade.Wait(_stop.Token);
                    }

                    continue;
                }

                int at = (int)(published & (RingBytes - 1));
                int ask = (int)Math.Min(Math.Min(room, RingBytes - at), PumpReadBytes);
                nint got = NativeMethods.read(fd, _ring + at, (nuint)ask);
                if (got > 0)
                {
                    published += got;
                    Interlocked.Exchange(ref _written, published);
                    long wanted = Volatile.Read(ref _wanted);
                    if (wanted > 0 && published - Volatile.Read(ref _taken) >= wanted)
                    {
                        _dataCame.Set();
                    }

                    continue;
                }

                if (got == 0)
                {
                    break;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno == NativeMethods.EIntr)
                {
                    continue;
                }

                if (errno != NativeMethods.EAgain)
                {
                    throw new IOException($"reading the migration stream failed: {Marshal.GetPInvokeErrorMessage(errno)}");
                }

                // The pipe is empty. A consumer waiting for more than there is gets what there is only when QEMU has
                // sent nothing for a whole slice: waking it for each of QEMU's writes (32 KiB) is what made the
                // capture slow.
                var poll = new NativeMethods.PollFd { Fd = fd, Events = NativeMethods.PollIn };
                int ready = NativeMethods.poll(&poll, 1, 100);
                if (ready == 0 && Volatile.Read(ref _wanted) > 0 && published > Volatile.Read(ref _taken))
                {
                    _dataCame.Set();
                }
                else if (ready > 0)
                {
                    // Data again: let it gather for a millisecond before reading. A reader that reads as soon as
                    // anything is there competes with QEMU's writes page by page (Linux wakes a pipe's reader for the
                    // first page of a write): 32,000 context switches a capture of 100 MB, measured. In a millisecond
                    // QEMU writes a few hundred KiB, well inside the pipe's 1 MiB, so it is never held up.
                    PumpSleeps++;
                    Thread.Sleep(1);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Disposed while the consumer was not reading.
        }
        catch (IOException e)
        {
            _failure = e;
        }
        finally
        {
            _ended = true;
            _dataCame.Set();
        }
    }
}
