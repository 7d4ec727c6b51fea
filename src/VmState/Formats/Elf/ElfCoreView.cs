using VmState.Arch.X86;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Formats.Elf;

/// <summary>
/// The ELF core <see cref="ElfCoreWriter"/> would write for a machine, read at any offset without being written: the
/// headers and notes are made once (a few KiB), and a read in a PT_LOAD's bytes reads guest-physical memory there.
/// The same layout, byte for byte, as the written core (the filesystem view's <c>machine/core.elf</c>, which
/// <c>gdb -c</c> and <c>crash</c> open like any core).
/// </summary>
public sealed class ElfCoreView
{
    private readonly IPhysicalMemory _memory;
    private readonly byte[] _headers;
    private readonly (long Offset, ulong Address, long Length)[] _segments;

    private ElfCoreView(IPhysicalMemory memory, byte[] headers, (long, ulong, long)[] segments, long size)
    {
        _memory = memory;
        _headers = headers;
        _segments = segments;
        Size = size;
    }

    /// <summary>The core's size in bytes.</summary>
    public long Size { get; }

    /// <summary>
    /// Lays out the core of <paramref name="machine"/> (its vCPUs' notes now, <paramref name="vmcoreinfoNote"/>, one
    /// PT_LOAD per RAM range and <paramref name="virtualMappings"/> as aliases), reading RAM from
    /// <paramref name="memory"/> (the machine's own memory when null).
    /// </summary>
    public static ElfCoreView Create(MachineState machine, byte[]? vmcoreinfoNote, IReadOnlyList<VirtualMapping> virtualMappings, IPhysicalMemory? memory = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(virtualMappings);
        IReadOnlyList<MemoryRange> ranges = machine.Memory.Ranges;
        (ElfCoreBuilder core, _, ElfCoreSegment[] physical) = ElfCoreWriter.Plan(machine, vmcoreinfoNote, virtualMappings, _ => null, new long?[ranges.Count]);
        ElfCoreLayout layout = core.Layout();
        var segments = new (long, ulong, long)[physical.Length];
        for (int i = 0; i < physical.Length; i++)
        {
            segments[i] = (layout.OffsetOf(physical[i]), ranges[i].Start, (long)ranges[i].Length);
        }

        Array.Sort(segments, (a, b) => a.Item1.CompareTo(b.Item1));
        return new ElfCoreView(memory ?? machine.Memory, layout.EncodeHeaders(), segments, layout.FileSize);
    }

    /// <summary>Reads the core at <paramref name="offset"/>: the count read (0 at the end; between segments, zeros).</summary>
    /// <exception cref="IOException">RAM at that place could not be read.</exception>
    public int Read(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset >= Size || destination.IsEmpty)
        {
            return 0;
        }

        int want = (int)Math.Min(destination.Length, Size - offset);
        if (offset < _headers.Length)
        {
            int n = (int)Math.Min(want, _headers.Length - offset);
            _headers.AsSpan((int)offset, n).CopyTo(destination);
            return n;
        }

        // The last segment starting at or before the offset.
        int lo = 0, hi = _segments.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_segments[mid].Offset <= offset)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        if (found >= 0 && offset < _segments[found].Offset + _segments[found].Length)
        {
            (long start, ulong address, long length) = _segments[found];
            int n = (int)Math.Min(want, start + length - offset);
            int got = _memory.Read(address + (ulong)(offset - start), destination[..n]);
            if (got <= 0)
            {
                throw new IOException($"core offset 0x{offset:x}: guest-physical 0x{address + (ulong)(offset - start):x} could not be read from {_memory.Name}");
            }

            return got;
        }

        // Alignment padding before the next segment (or after the last): zeros.
        long next = found + 1 < _segments.Length ? _segments[found + 1].Offset : Size;
        int zeros = (int)Math.Min(want, next - offset);
        destination[..zeros].Clear();
        return zeros;
    }
}
