using System.IO.MemoryMappedFiles;
using VmState.Memory;

namespace VmState.Live;

/// <summary>
/// Guest RAM of a running QEMU, by the fastest path each range allows: RAM on a shared memory backend
/// (memory-backend-file/memfd with share=on) is mapped into this process and read or written with plain memory
/// copies (or borrowed as a span, no copy at all); everything else goes through QEMU's process memory.
/// </summary>
public sealed unsafe class LiveMemory : IPhysicalMemory, ISpanMemory, IDisposable
{
    private readonly QemuProcessMemory _process;
    private readonly IPhysicalMemory? _fallback;
    private readonly MemoryRange[] _ranges;
    private readonly byte*[] _direct;
    private readonly List<(MemoryMappedFile File, MemoryMappedViewAccessor View)> _maps = [];

    internal LiveMemory(QemuProcessMemory process, IReadOnlyList<HmpText.RamRegion> regions, IReadOnlyDictionary<string, string> sharedFiles, IPhysicalMemory? fallback = null)
    {
        _process = process;
        _fallback = fallback;
        _ranges = process.Ranges.ToArray();
        _direct = new byte*[_ranges.Length];
        var bases = new Dictionary<string, (nint Pointer, long Length)>(StringComparer.Ordinal);
        foreach ((string block, string path) in sharedFiles)
        {
            long length = new FileInfo(path).Length;
            var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
            MemoryMappedViewAccessor view = file.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _maps.Add((file, view));
            bases[block] = ((nint)(p + view.PointerOffset), length);
        }

        for (int i = 0; i < _ranges.Length; i++)
        {
            HmpText.RamRegion? region = regions.FirstOrDefault(r => r.Start == _ranges[i].Start);
            if (region is not null && bases.TryGetValue(region.Name, out (nint Pointer, long Length) b) && (long)(region.Offset + region.Length) <= b.Length)
            {
                _direct[i] = (byte*)b.Pointer + region.Offset;
            }
        }

        SharedBytes = _ranges.Where((r, i) => _direct[i] != null).Aggregate(0UL, (s, r) => s + r.Length);
    }

    /// <inheritdoc />
    public string Name => _process.Name;

    /// <inheritdoc />
    public IReadOnlyList<MemoryRange> Ranges => _ranges;

    /// <summary>QEMU's process memory (process_vm_readv) for every range, whatever path this object prefers.</summary>
    internal QemuProcessMemory Process => _process;

    /// <summary>Bytes of guest RAM served from a shared mapping (the rest comes from QEMU's process memory).</summary>
    public ulong SharedBytes { get; }

    /// <summary>The QEMU process id.</summary>
    public int ProcessId => _process.ProcessId;

    /// <summary>The slower path used outside shared memory when QEMU's process memory is not readable, or null.</summary>
    public IPhysicalMemory? Fallback => _fallback;

    /// <inheritdoc />
    public int Read(ulong address, Span<byte> destination)
    {
        int ri = _ranges.FindRange(address);
        if (ri >= 0 && _direct[ri] != null && address + (ulong)destination.Length <= _ranges[ri].End)
        {
            byte* from = _direct[ri] + (address - _ranges[ri].Start);
            if (destination.Length >= QemuProcessMemory.ParallelReadBytes && Environment.ProcessorCount > 1)
            {
                CopyInParts(from, destination);
            }
            else
            {
                new ReadOnlySpan<byte>(from, destination.Length).CopyTo(destination);
            }

            return destination.Length;
        }

        int done = 0;
        foreach (RangePiece p in _ranges.Pieces(address, destination.Length))
        {
            Span<byte> d = destination.Slice(p.Offset, p.Length);
            if (_direct[p.RangeIndex] != null)
            {
                new ReadOnlySpan<byte>(_direct[p.RangeIndex] + (p.Address - _ranges[p.RangeIndex].Start), p.Length).CopyTo(d);
            }
            else if ((_fallback is not null ? _fallback.Read(p.Address, d) : _process.Read(p.Address, d)) != p.Length)
            {
                break;
            }

            done = p.Offset + p.Length;
        }

        return done;
    }

    /// <summary>A large copy out of a shared mapping on up to every core, in page-aligned parts of at least 1 MiB.</summary>
    private static void CopyInParts(byte* from, Span<byte> destination)
    {
        int length = destination.Length;
        int parts = Math.Max(1, Math.Min(Environment.ProcessorCount, length >> 20));
        int chunk = (length / parts + 4095) & ~4095;
        fixed (byte* to = destination)
        {
            nint source = (nint)from, target = (nint)to;
            Parallel.For(0, parts, i =>
            {
                int offset = i * chunk;
                int size = Math.Min(chunk, length - offset);
                if (size > 0)
                {
                    Buffer.MemoryCopy((byte*)(source + offset), (byte*)(target + offset), size, size);
                }
            });
        }
    }

    /// <summary>Writes guest RAM; the running guest sees the bytes at once. Returns the bytes written.</summary>
    public int Write(ulong address, ReadOnlySpan<byte> source)
    {
        int done = 0;
        foreach (RangePiece p in _ranges.Pieces(address, source.Length))
        {
            ReadOnlySpan<byte> s = source.Slice(p.Offset, p.Length);
            if (_direct[p.RangeIndex] != null)
            {
                s.CopyTo(new Span<byte>(_direct[p.RangeIndex] + (p.Address - _ranges[p.RangeIndex].Start), p.Length));
            }
            else if (_fallback is not null)
            {
                throw new IOException($"writing guest RAM needs the shared-memory or the process-memory path; {_fallback.Name} is read-only here");
            }
            else if (_process.Write(p.Address, s) != p.Length)
            {
                break;
            }

            done = p.Offset + p.Length;
        }

        return done;
    }

    /// <summary>
    /// Borrows guest RAM as a span without copying (shared-memory ranges only; valid until disposal). False when
    /// the range is not on a shared mapping or crosses a range boundary.
    /// </summary>
    public bool TryGetSpan(ulong address, int length, out ReadOnlySpan<byte> span)
    {
        int ri = _ranges.FindRange(address);
        if (ri >= 0 && _direct[ri] != null && address + (ulong)length <= _ranges[ri].End)
        {
            span = new ReadOnlySpan<byte>(_direct[ri] + (address - _ranges[ri].Start), length);
            return true;
        }

        span = default;
        return false;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach ((MemoryMappedFile file, MemoryMappedViewAccessor view) in _maps)
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
            file.Dispose();
        }

        _maps.Clear();
        Array.Clear(_direct);
        (_fallback as IDisposable)?.Dispose();
    }
}
