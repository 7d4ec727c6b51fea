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

    /// <inheritdoc />
    public int Read(ulong address, Span<byte> destination) => Transfer(address, destination, write: false);

    /// <summary>Writes guest RAM (the running guest sees it at once); returns the bytes written.</summary>
    public int Write(ulong address, ReadOnlySpan<byte> source)
    {
        fixed (byte* p = source)
        {
            return Transfer(address, new Span<byte>(p, source.Length), write: true);
        }
    }

    private int Transfer(ulong address, Span<byte> buffer, bool write)
    {
        int done = 0;
        foreach (RangePiece piece in _ranges.Pieces(address, buffer.Length))
        {
            int ri = piece.RangeIndex;
            ulong a = piece.Address;
            int n = piece.Length;
            fixed (byte* p = buffer.Slice(piece.Offset, n))
            {
                var local = new NativeMethods.IoVec { Base = p, Length = (nuint)n };
                var remote = new NativeMethods.IoVec { Base = (void*)(_hostAddresses[ri] + (a - _ranges[ri].Start)), Length = (nuint)n };
                nint r = write
                    ? NativeMethods.process_vm_writev(_pid, &local, 1, &remote, 1, 0)
                    : NativeMethods.process_vm_readv(_pid, &local, 1, &remote, 1, 0);
                if (r < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == 3)
                    {
                        // ESRCH: the QEMU process exited; the VM is gone, which is not an I/O failure of this host.
                        throw new LiveVmGoneException(_pid, $"QEMU process {_pid} is gone (ESRCH)");
                    }

                    throw new IOException(errno switch
                    {
                        1 => $"no permission to {(write ? "write" : "read")} QEMU process {_pid}'s memory (EPERM): run as root or as QEMU's user with ptrace allowed (kernel.yama.ptrace_scope)",
                        _ => $"process_vm_{(write ? "writev" : "readv")} on QEMU process {_pid} failed with errno {errno}",
                    });
                }

                done = piece.Offset + (int)r;
                if (r < n)
                {
                    break;
                }
            }
        }

        return done;
    }
}
