using System.IO.Hashing;
using System.Text;
using VmState.Memory;

namespace VmState.Tests.Memory;

/// <summary>The scan primitive and the hash and search built on it, on memories held in arrays.</summary>
public sealed class PhysicalMemoryScanTests
{
    private const int Page = PhysicalMemoryScan.PageSize;

    [Fact]
    public void EveryBackedByteIsHandedOutOnceAndHolesAreSkipped()
    {
        // Two ranges with a hole between them, the second not a whole number of blocks.
        var memory = new ArrayMemory([new MemoryRange(0, 40 * Page, "low"), new MemoryRange(0x100000, 13 * Page + 100, "high")], seed: 1);
        var scan = new PhysicalMemoryScan(memory) { BlockSize = 8 * Page, MaxDegreeOfParallelism = 2 };
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<ulong, byte[]>();
        scan.Run((in ScanBlock b) => Assert.True(seen.TryAdd(b.Address, b.Bytes[..b.Length].ToArray())));

        Assert.Equal(new ulong[] { 0, 0x8000, 0x10000, 0x18000, 0x20000, 0x100000, 0x108000 }, seen.Keys.Order());
        Assert.Equal(40UL * Page + (13 * Page) + 100, scan.TotalBytes);
        foreach ((ulong address, byte[] bytes) in seen)
        {
            Assert.Equal(memory.Bytes(address, bytes.Length), bytes);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void ProgressIsToldEveryBlockOnceAndAddsUpToTheTotal(int workers)
    {
        var memory = new ArrayMemory([new MemoryRange(0, 40 * Page, "low"), new MemoryRange(0x100000, 13 * Page + 100, "high")], seed: 4);
        var reported = new System.Collections.Concurrent.ConcurrentBag<ulong>();
        var scan = new PhysicalMemoryScan(memory) { BlockSize = 8 * Page, MaxDegreeOfParallelism = workers, Progress = new Reports(reported) };
        scan.Run((in ScanBlock _) => { });
        Assert.Equal(7, reported.Count);
        Assert.Equal(scan.TotalBytes, reported.Aggregate(0UL, (s, n) => s + n));
    }

    /// <summary>An <see cref="IProgress{T}"/> that keeps every report (Progress&lt;T&gt; would post them to a context).</summary>
    private sealed class Reports(System.Collections.Concurrent.ConcurrentBag<ulong> into) : IProgress<ulong>
    {
        public void Report(ulong value) => into.Add(value);
    }

    [Fact]
    public void RequestedRangesAreCutToWhatIsBacked()
    {
        var memory = new ArrayMemory([new MemoryRange(0, 16 * Page, "low"), new MemoryRange(32 * Page, 16 * Page, "high")], seed: 2);
        var scan = new PhysicalMemoryScan(memory, [new MemoryRange(8 * Page, 32 * Page, "ask")]);
        Assert.Equal([new MemoryRange(8 * Page, 8 * Page, "low"), new MemoryRange(32 * Page, 8 * Page, "high")], scan.Ranges);
    }

    [Fact]
    public void SearchFindsMatchesAcrossBlockAndContiguousRangeBoundariesButNotAcrossHoles()
    {
        var memory = new ArrayMemory(
            [new MemoryRange(0, 16 * Page, "a"), new MemoryRange(16 * Page, 16 * Page, "b"), new MemoryRange(64 * Page, 16 * Page, "c")],
            seed: 3);
        byte[] needle = Encoding.ASCII.GetBytes("vmstate-needle-0123456789");
        ulong[] placed =
        [
            (4 * Page) - 5,             // across the block boundary at 4 pages
            (16 * Page) - 10,           // across the boundary of ranges a and b (contiguous)
            (20 * Page) + 123,          // inside a block
            (80 * Page) - (ulong)needle.Length, // the very end of the memory
        ];
        foreach (ulong a in placed)
        {
            memory.Write(a, needle);
        }

        // Across the hole between b and c: not a match (the bytes are not adjacent in guest-physical memory).
        memory.Write((32 * Page) - 10, needle.AsSpan(0, 10));
        memory.Write(64 * Page, needle.AsSpan(10));

        var scan = new PhysicalMemoryScan(memory) { BlockSize = 4 * Page, Overlap = needle.Length - 1, MaxDegreeOfParallelism = 3 };
        Assert.Equal(placed, PhysicalMemorySearch.Find(scan, needle));
    }

    [Fact]
    public void SearchKeepsTheFirstHitsInAddressOrderAndOverlappingOnes()
    {
        var memory = new ArrayMemory([new MemoryRange(0, 64 * Page, "ram")], seed: 0, fill: 0x41); // all 'A'
        IReadOnlyList<ulong> hits = PhysicalMemorySearch.Find(memory, "AAA"u8, maxHits: 5000, maxDegreeOfParallelism: 2);
        Assert.Equal(Enumerable.Range(0, 5000).Select(i => (ulong)i), hits);
        Assert.Equal(64 * Page - 2, PhysicalMemorySearch.Find(memory, "AAA"u8, maxHits: int.MaxValue).Count);
    }

    [Fact]
    public void SingleAndMultiCoreGiveTheSameHashesAndHits()
    {
        var memory = new ArrayMemory([new MemoryRange(0, 300 * Page, "low"), new MemoryRange(0x1000000, 77 * Page, "high")], seed: 4);
        byte[] needle = [0x13];
        var one = new PhysicalMemoryScan(memory) { BlockSize = 16 * Page, MaxDegreeOfParallelism = 1, Overlap = 0 };
        var many = new PhysicalMemoryScan(memory) { BlockSize = 16 * Page, MaxDegreeOfParallelism = 4, Overlap = 0 };

        IReadOnlyList<PageHashRun> h1 = PhysicalMemoryHash.HashPages(one);
        IReadOnlyList<PageHashRun> h4 = PhysicalMemoryHash.HashPages(many);
        Assert.Equal(h1.Select(r => (r.Start, r.Length)), h4.Select(r => (r.Start, r.Length)));
        for (int i = 0; i < h1.Count; i++)
        {
            Assert.Equal(h1[i].Hashes, h4[i].Hashes);
        }

        // And each hash is the page's own XxHash128.
        Assert.Equal(XxHash128.HashToUInt128(memory.Bytes(0x1000000 + (5 * Page), Page)), h1[1].Hashes[5]);
        IReadOnlyList<ulong> s1 = PhysicalMemorySearch.Find(one, needle, maxHits: 50);
        Assert.Equal(s1, PhysicalMemorySearch.Find(many, needle, maxHits: 50));
        Assert.Equal(50, s1.Count);
        Assert.Equal(memory.IndexesOf(needle).Take(50), s1);
    }

    [Fact]
    public void KnownZeroPagesOfASparseSourceAreNotReadYetHashAndSearchLikeZeros()
    {
        var plain = new ArrayMemory([new MemoryRange(0, 256 * Page, "ram")], seed: 5);
        var sparse = new ArrayMemory([new MemoryRange(0, 256 * Page, "ram")], seed: 5, sparse: true);
        foreach (ArrayMemory m in new[] { plain, sparse })
        {
            // Zero every page but every seventh, and put a match that starts in a zero page and ends in data.
            for (int p = 0; p < 256; p++)
            {
                if (p % 7 != 0)
                {
                    m.Write((ulong)p * Page, new byte[Page]);
                }
            }

            m.Write((7 * Page) - 2, [0, 0, 0xEE, 0xFF]);
        }

        var scan = new PhysicalMemoryScan(sparse) { BlockSize = 32 * Page, Overlap = 3 };
        IReadOnlyList<PageHashRun> hs = PhysicalMemoryHash.HashPages(scan);
        Assert.Equal(37 * Page, sparse.BytesRead); // only the 37 pages with data were read
        Assert.Equal(PhysicalMemoryHash.HashPages(new PhysicalMemoryScan(plain)).Single().Hashes, hs.Single().Hashes);
        Assert.Equal(PhysicalMemoryHash.ZeroPage, hs.Single().Hashes[1]);

        byte[] needle = [0, 0, 0xEE, 0xFF];
        Assert.Equal(plain.IndexesOf(needle), PhysicalMemorySearch.Find(scan, needle));
        Assert.Contains((7UL * Page) - 2, PhysicalMemorySearch.Find(scan, needle));
    }

    [Fact]
    public void ASourceThatLendsSpansIsScannedWithoutReads()
    {
        var memory = new ArrayMemory([new MemoryRange(0, 64 * Page, "ram")], seed: 6, spans: true);
        memory.Write(100, "marker"u8);
        Assert.Equal([100UL], PhysicalMemorySearch.Find(memory, "marker"u8));
        PhysicalMemoryHash.HashPages(new PhysicalMemoryScan(memory));
        Assert.Equal(0, memory.BytesRead);
    }

    [Fact]
    public void AnUnreadableBackedBlockFailsTheScan()
    {
        var memory = new ArrayMemory([new MemoryRange(0, 64 * Page, "ram")], seed: 7) { FailAt = 40 * Page };
        IOException e = Assert.Throws<IOException>(() => PhysicalMemoryHash.HashPages(new PhysicalMemoryScan(memory) { BlockSize = 8 * Page }));
        Assert.Contains("0x28000", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Memory in one array per range; optionally sparse (knows its zero pages) or lending spans.</summary>
    private sealed class ArrayMemory : IPhysicalMemory, ISparseMemory, ISpanMemory
    {
        private readonly MemoryRange[] _ranges;
        private readonly byte[][] _data;
        private readonly bool _sparse;
        private readonly bool _spans;
        private long _read;
        private long _tail;

        public ArrayMemory(MemoryRange[] ranges, int seed, byte? fill = null, bool sparse = false, bool spans = false)
        {
            _ranges = ranges;
            var rng = new Random(seed);
            _data = ranges.Select(r =>
            {
                byte[] d = new byte[r.Length];
                if (fill is byte f)
                {
                    Array.Fill(d, f);
                }
                else
                {
                    rng.NextBytes(d);
                }

                return d;
            }).ToArray();
            _sparse = sparse;
            _spans = spans;
        }

        public string Name => "array";

        public IReadOnlyList<MemoryRange> Ranges => _ranges;

        public ulong FailAt { get; init; } = ulong.MaxValue;

        public long BytesRead => Interlocked.Read(ref _read);

        public long TailBytesRead => Interlocked.Read(ref _tail);

        public int Read(ulong address, Span<byte> destination)
        {
            int done = 0;
            foreach (RangePiece p in _ranges.Pieces(address, destination.Length))
            {
                if (p.Address <= FailAt && FailAt < p.Address + (ulong)p.Length)
                {
                    done = p.Offset + (int)(FailAt - p.Address);
                    _data[p.RangeIndex].AsSpan((int)(p.Address - _ranges[p.RangeIndex].Start), (int)(FailAt - p.Address)).CopyTo(destination[p.Offset..]);
                    break;
                }

                _data[p.RangeIndex].AsSpan((int)(p.Address - _ranges[p.RangeIndex].Start), p.Length).CopyTo(destination[p.Offset..]);
                done = p.Offset + p.Length;
            }

            // Block reads and the short reads of the overlap after a block, counted apart.
            Interlocked.Add(ref destination.Length < Page ? ref _tail : ref _read, done);

            return done;
        }

        public bool IsZero(ulong address, ulong length) =>
            _sparse && Slice(address, length) is byte[] b && !b.AsSpan().ContainsAnyExcept((byte)0);

        public bool TryGetSpan(ulong address, int length, out ReadOnlySpan<byte> span)
        {
            int ri = _ranges.FindRange(address);
            if (_spans && ri >= 0 && address + (ulong)length <= _ranges[ri].End)
            {
                span = _data[ri].AsSpan((int)(address - _ranges[ri].Start), length);
                return true;
            }

            span = default;
            return false;
        }

        public void Write(ulong address, ReadOnlySpan<byte> bytes)
        {
            foreach (RangePiece p in _ranges.Pieces(address, bytes.Length))
            {
                bytes.Slice(p.Offset, p.Length).CopyTo(_data[p.RangeIndex].AsSpan((int)(p.Address - _ranges[p.RangeIndex].Start)));
            }
        }

        public byte[] Bytes(ulong address, int length)
        {
            int ri = _ranges.FindRange(address);
            return _data[ri].AsSpan((int)(address - _ranges[ri].Start), length).ToArray();
        }

        public IEnumerable<ulong> IndexesOf(byte[] needle)
        {
            // Naive reference: every range on its own, then across contiguous ranges.
            var flat = new List<(ulong Start, byte[] Bytes)>();
            for (int i = 0; i < _ranges.Length; i++)
            {
                if (flat.Count > 0 && flat[^1].Start + (ulong)flat[^1].Bytes.Length == _ranges[i].Start)
                {
                    flat[^1] = (flat[^1].Start, [.. flat[^1].Bytes, .. _data[i]]);
                }
                else
                {
                    flat.Add((_ranges[i].Start, _data[i]));
                }
            }

            foreach ((ulong start, byte[] bytes) in flat)
            {
                for (int i = 0; i + needle.Length <= bytes.Length; i++)
                {
                    if (bytes.AsSpan(i, needle.Length).SequenceEqual(needle))
                    {
                        yield return start + (ulong)i;
                    }
                }
            }
        }

        private byte[] Slice(ulong address, ulong length)
        {
            int ri = _ranges.FindRange(address);
            return _data[ri].AsSpan((int)(address - _ranges[ri].Start), (int)length).ToArray();
        }
    }
}
