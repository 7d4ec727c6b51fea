using System.Buffers.Binary;
using System.Text;
using VmState.IO;

namespace VmState.Formats.Qcow2;

/// <summary>
/// A qcow2 image opened read-only: its header and internal snapshot table, and the vmstate (a migration stream
/// stored after the end of the virtual disk in the snapshot's own L1/L2 tree) of any snapshot.
/// </summary>
public sealed class Qcow2Image : IDisposable
{
    /// <summary>"QFI\xfb".</summary>
    public const uint Magic = 0x514649FB;

    private const int MaxSnapshots = 65536;
    private const int MaxExtraData = 1024;
    private readonly IRandomAccessSource _source;
    private readonly bool _ownsSource;

    private Qcow2Image(IRandomAccessSource source, bool ownsSource)
    {
        _source = source;
        _ownsSource = ownsSource;
    }

    /// <summary>qcow2 version (2 or 3).</summary>
    public int Version { get; private set; }

    /// <summary>log2 of the cluster size.</summary>
    public int ClusterBits { get; private set; }

    /// <summary>Virtual disk size.</summary>
    public ulong Size { get; private set; }

    /// <summary>True when L2 entries are 128-bit (extended L2, incompatible feature bit 4).</summary>
    public bool ExtendedL2 { get; private set; }

    /// <summary>Internal snapshots in table order.</summary>
    public IReadOnlyList<Qcow2Snapshot> Snapshots { get; private set; } = [];

    /// <summary>The file.</summary>
    public IRandomAccessSource Source => _source;

    /// <summary>True when the source starts with the qcow2 magic.</summary>
    public static bool IsQcow2(IRandomAccessSource source)
    {
        Span<byte> m = stackalloc byte[4];
        return source.Read(0, m) == 4 && BinaryPrimitives.ReadUInt32BigEndian(m) == Magic;
    }

    /// <summary>Opens the image in <paramref name="path"/> read-only.</summary>
    public static Qcow2Image Open(string path)
    {
        var source = new FileSource(path);
        try
        {
            return Open(source, ownsSource: true);
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <summary>Parses the header and snapshot table of <paramref name="source"/>.</summary>
    public static Qcow2Image Open(IRandomAccessSource source, bool ownsSource)
    {
        var image = new Qcow2Image(source, ownsSource);
        image.ReadHeader();
        return image;
    }

    /// <summary>Finds a snapshot by id or by name (id first, as QEMU's loadvm does); null when none matches.</summary>
    public Qcow2Snapshot? Find(string idOrName)
    {
        foreach (Qcow2Snapshot s in Snapshots)
        {
            if (s.Id == idOrName)
            {
                return s;
            }
        }

        foreach (Qcow2Snapshot s in Snapshots)
        {
            if (s.Name == idOrName)
            {
                return s;
            }
        }

        return null;
    }

    /// <summary>The vmstate of <paramref name="snapshot"/> as a source of exactly VmStateSize bytes.</summary>
    public IRandomAccessSource OpenVmState(Qcow2Snapshot snapshot)
    {
        if (snapshot.VmStateSize == 0)
        {
            throw new VmStateFormatException(snapshot.TableOffset, $"qcow2 snapshot \"{snapshot.Name}\"", "it has no VM state (a disk-only snapshot)");
        }

        int l2Bits = ClusterBits - (ExtendedL2 ? 4 : 3);
        ulong diskSize = snapshot.DiskSize != 0 ? snapshot.DiskSize : Size;
        ulong granule = 1UL << (ClusterBits + l2Bits);
        ulong vmStateOffset = (diskSize + granule - 1) / granule * granule;
        return new Qcow2VirtualSource(this, snapshot, vmStateOffset, l2Bits);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsSource)
        {
            _source.Dispose();
        }
    }

    private void ReadHeader()
    {
        const string S = "qcow2 header";
        byte[] h = new byte[112];
        int n = _source.Read(0, h);
        if (n < 72)
        {
            throw new VmStateFormatException(0, S, $"the file has {_source.Length} bytes, fewer than a qcow2 header (72)");
        }

        uint magic = BinaryPrimitives.ReadUInt32BigEndian(h);
        if (magic != Magic)
        {
            throw new VmStateFormatException(0, S, $"expected the magic QFI\\xfb (0x514649fb), found 0x{magic:x8}");
        }

        Version = (int)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(4));
        if (Version is not (2 or 3))
        {
            throw new VmStateFormatException(4, S, $"version {Version} (expected 2 or 3)");
        }

        ClusterBits = (int)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(20));
        if (ClusterBits is < 9 or > 21)
        {
            throw new VmStateFormatException(20, S, $"cluster_bits {ClusterBits} (expected 9-21)");
        }

        Size = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(24));
        uint crypt = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(32));
        if (crypt != 0)
        {
            throw new VmStateFormatException(32, S, $"the image is encrypted (crypt_method {crypt}); encrypted images are not supported");
        }

        uint count = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(60));
        ulong tableOffset = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(64));
        if (Version == 3)
        {
            if (n < 104)
            {
                throw new VmStateFormatException(0, S, "a version 3 header needs at least 104 bytes");
            }

            ulong incompatible = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(72));
            if ((incompatible & 0x4) != 0)
            {
                throw new VmStateFormatException(72, S, "the image keeps its data in an external data file (incompatible feature bit 2), which is not supported");
            }

            ExtendedL2 = (incompatible & 0x10) != 0;
        }

        if (count > MaxSnapshots)
        {
            throw new VmStateFormatException(60, S, $"{count} snapshots (QEMU allows at most {MaxSnapshots})");
        }

        var snapshots = new List<Qcow2Snapshot>((int)count);
        var cursor = new SourceCursor(_source, (long)Math.Min(tableOffset, (ulong)long.MaxValue));
        for (int i = 0; i < count; i++)
        {
            snapshots.Add(ReadSnapshot(cursor, i, last: i == count - 1));
        }

        Snapshots = snapshots;
    }

    private static Qcow2Snapshot ReadSnapshot(SourceCursor c, int index, bool last)
    {
        string s = $"qcow2 snapshot table entry {index}";
        long start = c.Position;
        ulong l1Offset = c.ReadBe64(s);
        uint l1Size = c.ReadBe32(s);
        ushort idSize = c.ReadBe16(s);
        ushort nameSize = c.ReadBe16(s);
        uint dateSec = c.ReadBe32(s);
        uint dateNsec = c.ReadBe32(s);
        ulong vmClock = c.ReadBe64(s);
        ulong vmStateSize = c.ReadBe32(s);
        uint extraSize = c.ReadBe32(s);
        if (extraSize > MaxExtraData)
        {
            throw new VmStateFormatException(start + 36, s, $"extra_data_size {extraSize} (QEMU allows at most {MaxExtraData})");
        }

        ReadOnlySpan<byte> extra = c.Take((int)extraSize, s);
        ulong diskSize = 0;
        if (extraSize >= 8)
        {
            vmStateSize = BinaryPrimitives.ReadUInt64BigEndian(extra);
        }

        if (extraSize >= 16)
        {
            diskSize = BinaryPrimitives.ReadUInt64BigEndian(extra[8..]);
        }

        string id = Encoding.UTF8.GetString(c.Take(idSize, s));
        string name = Encoding.UTF8.GetString(c.Take(nameSize, s));
        // Entries are padded to 8 bytes; qemu-img ends the file right after the last entry's name, without its padding.
        long used = c.Position - start;
        long padding = (8 - (used % 8)) % 8;
        c.Skip(last ? Math.Min(padding, c.Remaining) : padding, s);
        DateTimeOffset date = DateTimeOffset.FromUnixTimeSeconds(dateSec).AddTicks(dateNsec / 100);
        return new Qcow2Snapshot(id, name, date, vmClock, vmStateSize, diskSize, l1Offset, l1Size, start);
    }

    /// <summary>The vmstate area of a snapshot, translated through the snapshot's L1/L2 tables.</summary>
    private sealed class Qcow2VirtualSource : IRandomAccessSource
    {
        private readonly Qcow2Image _image;
        private readonly Qcow2Snapshot _snapshot;
        private readonly ulong _base;
        private readonly int _l2Bits;
        private readonly int _entrySize;
        private readonly ulong[] _l1;
        private readonly Dictionary<ulong, byte[]> _l2Cache = new();

        public Qcow2VirtualSource(Qcow2Image image, Qcow2Snapshot snapshot, ulong vmStateOffset, int l2Bits)
        {
            _image = image;
            _snapshot = snapshot;
            _base = vmStateOffset;
            _l2Bits = l2Bits;
            _entrySize = image.ExtendedL2 ? 16 : 8;
            Length = (long)Math.Min(snapshot.VmStateSize, long.MaxValue);
            string s = $"L1 table of qcow2 snapshot \"{snapshot.Name}\"";
            ulong l1Bytes = (ulong)snapshot.L1Size * 8;
            if (snapshot.L1Size > 32 * 1024 * 1024 || snapshot.L1TableOffset > (ulong)image._source.Length || l1Bytes > (ulong)image._source.Length - snapshot.L1TableOffset)
            {
                throw new VmStateFormatException(snapshot.TableOffset, s, $"{snapshot.L1Size} entries at 0x{snapshot.L1TableOffset:x} do not fit in the file");
            }

            byte[] raw = new byte[l1Bytes];
            image._source.Read((long)snapshot.L1TableOffset, raw);
            _l1 = new ulong[snapshot.L1Size];
            for (int i = 0; i < _l1.Length; i++)
            {
                _l1[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
            }
        }

        public long Length { get; }

        public string Name => $"{_image._source.Name} (snapshot \"{_snapshot.Name}\")";

        public int Read(long offset, Span<byte> destination)
        {
            if (offset < 0 || offset >= Length)
            {
                return 0;
            }

            int count = (int)Math.Min(destination.Length, Length - offset);
            int clusterBits = _image.ClusterBits;
            int clusterSize = 1 << clusterBits;
            int done = 0;
            while (done < count)
            {
                ulong v = _base + (ulong)offset + (ulong)done;
                int inCluster = (int)(v & (ulong)(clusterSize - 1));
                int n = Math.Min(clusterSize - inCluster, count - done);
                Span<byte> d = destination.Slice(done, n);
                ulong host = HostCluster(v);
                if (host == 0)
                {
                    d.Clear();
                }
                else
                {
                    int r = _image._source.Read((long)host + inCluster, d);
                    if (r != n)
                    {
                        throw new VmStateFormatException((long)host + inCluster, "qcow2 data cluster", $"the image ends inside a cluster of snapshot \"{_snapshot.Name}\"");
                    }
                }

                done += n;
            }

            return done;
        }

        public void Dispose()
        {
        }

        private ulong HostCluster(ulong v)
        {
            int clusterBits = _image.ClusterBits;
            ulong l1Index = v >> (clusterBits + _l2Bits);
            if (l1Index >= (ulong)_l1.Length)
            {
                return 0;
            }

            ulong l2Offset = _l1[l1Index] & 0x00FF_FFFF_FFFF_FE00UL;
            if (l2Offset == 0)
            {
                return 0;
            }

            if (!_l2Cache.TryGetValue(l2Offset, out byte[]? l2))
            {
                int tableSize = 1 << clusterBits;
                if (l2Offset > (ulong)_image._source.Length - (ulong)tableSize)
                {
                    throw new VmStateFormatException((long)Math.Min(l2Offset, long.MaxValue), "qcow2 L2 table", $"L1 entry {l1Index} points past the end of the file");
                }

                l2 = new byte[tableSize];
                _image._source.Read((long)l2Offset, l2);
                if (_l2Cache.Count >= 256)
                {
                    _l2Cache.Clear();
                }

                _l2Cache[l2Offset] = l2;
            }

            int l2Index = (int)((v >> clusterBits) & ((1UL << _l2Bits) - 1));
            ulong entry = BinaryPrimitives.ReadUInt64BigEndian(l2.AsSpan(l2Index * _entrySize));
            if ((entry & (1UL << 62)) != 0)
            {
                throw new VmStateFormatException((long)l2Offset + (l2Index * _entrySize), "qcow2 L2 entry", "a compressed cluster in the vmstate area, which QEMU never writes there and this reader does not support");
            }

            if (!_image.ExtendedL2 && (entry & 1) != 0)
            {
                return 0;
            }

            return entry & 0x00FF_FFFF_FFFF_FE00UL;
        }
    }
}
