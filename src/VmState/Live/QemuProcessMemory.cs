using System.Runtime.InteropServices;
using VmState.Memory;

namespace VmState.Live;

/// <summary>
/// Guest RAM read straight out of the QEMU process with process_vm_readv: each guest-physical RAM range is mapped
/// to the host virtual address QEMU keeps it at (HMP gpa2hva). Needs ptrace rights over QEMU (same user with
/// ptrace_scope 0/1 as its parent, or CAP_SYS_PTRACE / root). No QEMU option is needed.
/// </summary>
public sealed unsafe class QemuProcessMemory : IPhysicalMemory
{
    private readonly int _pid;
    private readonly MemoryRange[] _ranges;
    private readonly ulong[] _hostAddresses;

    /// <summary>Creates the memory for QEMU process <paramref name="pid"/> with (range, host address) pairs sorted by address.</summary>
    public QemuProcessMemory(int pid, IReadOnlyList<(MemoryRange Range, ulong HostAddress)> ranges)
    {
        _pid = pid;
        _ranges = ranges.Select(r => r.Range).ToArray();
        _hostAddresses = ranges.Select(r => r.HostAddress).ToArray();
    }

    /// <inheritdoc />
    public string Name => $"QEMU process {_pid}";

    /// <inheritdoc />
    public IReadOnlyList<MemoryRange> Ranges => _ranges;

    /// <summary>The QEMU process id.</summary>
    public int ProcessId => _pid;

    /// <summary>
    /// Reads of at least this many bytes are split across the cores (<see cref="Read"/>): one process_vm_readv
    /// copies at about half the speed of a memcpy (the kernel pins and copies page by page on one core), so a large
    /// read on two cores gets close to memcpy speed.
    /// </summary>
    public const int ParallelReadBytes = 2 << 20;

    /// <inheritdoc />
    /// <remarks>
    /// A read of <see cref="ParallelReadBytes"/> or more runs on up to every core, in page-aligned parts of at least
    /// 1 MiB; the result is the same as one call's (the bytes read in order up to the first that is not readable).
    /// </remarks>
    public int Read(ulong address, Span<byte> destination)
    {
        int parts = destination.Length >= ParallelReadBytes ? Math.Min(Environment.ProcessorCount, destination.Length >> 20) : 1;
        if (parts < 2)
        {
            return Transfer(address, destination, write: false);
        }

        fixed (byte* p = destination)
        {
            return ReadInParts(address, p, destination.Length, parts);
        }
    }

    private int ReadInParts(ulong address, byte* buffer, int length, int parts)
    {
        int chunk = (length / parts + 4095) & ~4095;
        int[] done = new int[parts];
        nint at = (nint)buffer;
        try
        {
            Parallel.For(0, parts, i =>
            {
                int offset = i * chunk;
                int size = Math.Min(chunk, length - offset);
                done[i] = size <= 0 ? 0 : Transfer(address + (ulong)offset, new Span<byte>((byte*)(at + offset), size), write: false);
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            // The first part's failure is what one call would have reported (typed: LiveVmGoneException, IOException).
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
            throw;
        }

        int total = 0;
        for (int i = 0; i < parts; i++)
        {
            int size = Math.Max(0, Math.Min(chunk, length - (i * chunk)));
            total += done[i];
            if (done[i] < size)
            {
                break;
            }
        }

        return total;
    }

    /// <summary>Writes guest RAM (the running guest sees it at once); returns the bytes written.</summary>
    public int Write(ulong address, ReadOnlySpan<byte> source)
    {
        fixed (byte* p = source)
        {
            return Transfer(address, new Span<byte>(p, source.Length), write: true);
        }
    }

    /// <summary>The most iovecs one process_vm_readv/writev call takes (the kernel's UIO_MAXIOV, IOV_MAX).</summary>
    public const int MaxIoVecs = 1024;

    /// <summary>
    /// Reads <paramref name="itemSize"/> bytes at each of <paramref name="addresses"/> into consecutive slots of
    /// <paramref name="destination"/> (slot i at i × itemSize), batching up to <see cref="MaxIoVecs"/> items per
    /// process_vm_readv call: many scattered pages (a capture's dirty pages) in a few system calls, no allocation.
    /// Each item must lie inside one RAM range. Returns how many items were read whole, in order (stops at the
    /// first that is not backed or not readable).
    /// </summary>
    [System.Runtime.CompilerServices.SkipLocalsInit]
    public int ReadMany(ReadOnlySpan<ulong> addresses, int itemSize, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(itemSize);
        if ((long)addresses.Length * itemSize > destination.Length)
        {
            throw new ArgumentException("the destination is shorter than the items", nameof(destination));
        }

        NativeMethods.IoVec* remote = stackalloc NativeMethods.IoVec[MaxIoVecs];
        int done = 0;
        fixed (byte* d = destination)
        {
            while (done < addresses.Length)
            {
                int usable = 0;
                while (usable < MaxIoVecs && done + usable < addresses.Length)
                {
                    ulong a = addresses[done + usable];
                    int ri = _ranges.FindRange(a);
                    if (ri < 0 || a + (ulong)itemSize > _ranges[ri].End)
                    {
                        break;
                    }

                    remote[usable++] = new NativeMethods.IoVec { Base = (void*)(_hostAddresses[ri] + (a - _ranges[ri].Start)), Length = (nuint)itemSize };
                }

                if (usable == 0)
                {
                    return done;
                }

                var local = new NativeMethods.IoVec { Base = d + ((long)done * itemSize), Length = (nuint)((long)usable * itemSize) };
                nint r = NativeMethods.process_vm_readv(_pid, &local, 1, remote, (nuint)usable, 0);
                if (r < 0)
                {
                    throw Failure(write: false);
                }

                done += (int)(r / itemSize);
                if (r < (long)usable * itemSize || (usable < MaxIoVecs && done < addresses.Length))
                {
                    // A short read, or the batch ended at an item that is not backed.
                    return done;
                }
            }
        }

        return done;
    }

    [System.Runtime.CompilerServices.SkipLocalsInit]
    private int Transfer(ulong address, Span<byte> buffer, bool write)
    {
        // One system call for the whole access: one remote iovec per range it touches (almost always one), batched
        // by MaxIoVecs; the kernel walks large iovecs itself, so a multi-GiB read is a handful of calls.
        const int Batch = 16;
        NativeMethods.IoVec* remote = stackalloc NativeMethods.IoVec[Batch];
        int done = 0;
        fixed (byte* p = buffer)
        {
            RangePieces pieces = _ranges.Pieces(address, buffer.Length);
            bool more = pieces.MoveNext();
            while (more)
            {
                int count = 0;
                int start = pieces.Current.Offset;
                int length = 0;
                do
                {
                    RangePiece piece = pieces.Current;
                    int ri = piece.RangeIndex;
                    remote[count++] = new NativeMethods.IoVec { Base = (void*)(_hostAddresses[ri] + (piece.Address - _ranges[ri].Start)), Length = (nuint)piece.Length };
                    length += piece.Length;
                    more = pieces.MoveNext();
                }
                while (more && count < Batch);

                var local = new NativeMethods.IoVec { Base = p + start, Length = (nuint)length };
                nint r = write
                    ? NativeMethods.process_vm_writev(_pid, &local, 1, remote, (nuint)count, 0)
                    : NativeMethods.process_vm_readv(_pid, &local, 1, remote, (nuint)count, 0);
                if (r < 0)
                {
                    throw Failure(write);
                }

                done = start + (int)r;
                if (r < length)
                {
                    break;
                }
            }
        }

        return done;
    }

    private Exception Failure(bool write)
    {
        int errno = Marshal.GetLastPInvokeError();
        if (errno == 3)
        {
            // ESRCH: the QEMU process exited; the VM is gone, which is not an I/O failure of this host.
            return new LiveVmGoneException(_pid, $"QEMU process {_pid} is gone (ESRCH)");
        }

        return new IOException(errno switch
        {
            1 => $"no permission to {(write ? "write" : "read")} QEMU process {_pid}'s memory (EPERM): run as root or as QEMU's user with ptrace allowed (kernel.yama.ptrace_scope)",
            _ => $"process_vm_{(write ? "writev" : "readv")} on QEMU process {_pid} failed with errno {errno}",
        });
    }
}
