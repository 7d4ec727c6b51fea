using System.Buffers.Binary;
using System.Text;
using VmState.Formats.Qcow2;
using VmState.IO;

namespace VmState.Editing;

/// <summary>
/// Adds an internal snapshot to a qcow2 image (docs/interop/qcow2.txt, QEMU 7.2 block/qcow2-snapshot.c): the new
/// snapshot shares the disk state of a base snapshot (its L2 tables and data clusters get one more reference) and
/// carries a new vmstate in clusters appended to the file. The snapshot table is rewritten to new clusters and the
/// header updated last. Only 16-bit refcounts and standard (not extended) L2 entries are supported.
/// </summary>
public sealed class Qcow2SnapshotWriter : IDisposable
{
    private const ulong OffsetMask = 0x00FF_FFFF_FFFF_FE00UL;
    private const ulong Copied = 1UL << 63;
    private const ulong Compressed = 1UL << 62;
    private readonly FileStream _file;
    private readonly int _clusterBits;
    private readonly long _clusterSize;
    private readonly ulong _refcountTableOffset;
    private readonly ulong[] _refcountTable;
    private readonly Dictionary<long, byte[]> _refcountBlocks = new();
    private long _nextFree;

    private Qcow2SnapshotWriter(string path)
    {
        // Shared with our own readers of the same image (in-place edits read the base snapshot while writing).
        _file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        byte[] h = ReadAt(0, 112);
        if (BinaryPrimitives.ReadUInt32BigEndian(h) != Qcow2Image.Magic)
        {
            throw new VmStateFormatException(0, "qcow2 header", "not a qcow2 image");
        }

        uint version = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(4));
        _clusterBits = (int)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(20));
        _clusterSize = 1L << _clusterBits;
        _refcountTableOffset = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(48));
        uint refcountTableClusters = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(56));
        if (version == 3)
        {
            ulong incompatible = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(72));
            if ((incompatible & 0x1) != 0)
            {
                throw new InvalidOperationException("the image is marked dirty (it was not closed cleanly); run qemu-img check -r all on it first");
            }

            if ((incompatible & ~0x1UL) != 0)
            {
                throw new InvalidOperationException($"the image uses incompatible features 0x{incompatible:x} (corrupt, external data file, compression type or extended L2), which this writer does not support");
            }

            uint order = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(96));
            if (order != 4)
            {
                throw new InvalidOperationException($"the image has {1 << (int)order}-bit refcounts; this writer supports the default 16-bit ones");
            }
        }

        _refcountTable = new ulong[refcountTableClusters * _clusterSize / 8];
        byte[] rt = ReadAt((long)_refcountTableOffset, (int)(refcountTableClusters * _clusterSize));
        for (int i = 0; i < _refcountTable.Length; i++)
        {
            _refcountTable[i] = BinaryPrimitives.ReadUInt64BigEndian(rt.AsSpan(i * 8));
        }

        _nextFree = (_file.Length + _clusterSize - 1) / _clusterSize;
    }

    /// <summary>
    /// Adds snapshot <paramref name="name"/> to the image at <paramref name="path"/> (modified in place): the disk
    /// state of <paramref name="baseSnapshot"/> and the VM state read from <paramref name="vmstate"/>.
    /// </summary>
    public static void AddSnapshot(string path, string baseSnapshot, string name, IRandomAccessSource vmstate, CancellationToken cancellationToken = default)
    {
        // Before anything is opened or allocated: a name too long for the table used to be stored truncated, after
        // the L1, L2 and vmstate clusters were already allocated (and then leaked).
        ValidateName(name);
        Qcow2Snapshot base_;
        List<Qcow2Snapshot> existing;
        ulong headerSize;
        ulong oldTableOffset;
        using (Qcow2Image image = Qcow2Image.Open(path))
        {
            base_ = image.Find(baseSnapshot) ?? throw new VmStateNotFoundException(VmStateObjectKind.Snapshot, baseSnapshot, $"{path} has no snapshot \"{baseSnapshot}\"");
            if (image.Find(name) is not null)
            {
                throw new ArgumentException($"{path} already has a snapshot named \"{name}\"");
            }

            existing = [.. image.Snapshots];
            headerSize = image.Size;
            oldTableOffset = existing.Count > 0 ? (ulong)existing[0].TableOffset : 0;
        }

        using var w = new Qcow2SnapshotWriter(path);
        w.Add(base_, existing, name, headerSize, oldTableOffset, vmstate, cancellationToken);
    }

    /// <summary>Most bytes (UTF-8) of a snapshot id or name: the snapshot table stores both lengths in 16 bits.</summary>
    public const int MaxNameBytes = ushort.MaxValue;

    /// <summary>
    /// Throws <see cref="ArgumentException"/> unless <paramref name="name"/> fits a qcow2 snapshot table entry:
    /// docs/interop/qcow2.txt, "Snapshot table entry", bytes 12-13 (id_str length) and 14-15 (name length) are
    /// 16-bit. Callers check before any output is written.
    /// </summary>
    public static void ValidateName(string name)
    {
        int bytes = Encoding.UTF8.GetByteCount(name);
        if (bytes > MaxNameBytes)
        {
            throw new ArgumentException($"a qcow2 snapshot name is at most {MaxNameBytes} bytes (the snapshot table stores its length in 16 bits); this one has {bytes} bytes");
        }
    }

    /// <inheritdoc />
    public void Dispose() => _file.Dispose();

    private void Add(Qcow2Snapshot base_, List<Qcow2Snapshot> existing, string name, ulong headerSize, ulong oldTableOffset, IRandomAccessSource vmstate, CancellationToken ct)
    {
        int l2Bits = _clusterBits - 3;
        ulong diskSize = base_.DiskSize != 0 ? base_.DiskSize : headerSize;
        ulong granule = 1UL << (_clusterBits + l2Bits);
        ulong vmOffset = (diskSize + granule - 1) / granule * granule;
        long vmFirstL1 = (long)(vmOffset >> (_clusterBits + l2Bits));
        long vmLength = vmstate.Length;
        long vmLastL1 = (long)((vmOffset + (ulong)Math.Max(vmLength, 1) - 1) >> (_clusterBits + l2Bits));

        // The disk part of the base snapshot's L1: every L2 table and data cluster gains a reference.
        byte[] baseL1Raw = ReadAt((long)base_.L1TableOffset, (int)base_.L1Size * 8);
        long l1Size = Math.Max(Math.Min(base_.L1Size, vmFirstL1), vmLastL1 + 1);
        ulong[] l1 = new ulong[l1Size];
        for (long i = 0; i < Math.Min(base_.L1Size, vmFirstL1); i++)
        {
            ulong e = BinaryPrimitives.ReadUInt64BigEndian(baseL1Raw.AsSpan((int)(i * 8)));
            ulong l2 = e & OffsetMask;
            if (l2 == 0)
            {
                continue;
            }

            l1[i] = l2;
            AddRef(l2, +1);
            byte[] l2Entries = ReadAt((long)l2, (int)_clusterSize);
            for (int j = 0; j < _clusterSize / 8; j++)
            {
                ulong entry = BinaryPrimitives.ReadUInt64BigEndian(l2Entries.AsSpan(j * 8));
                if ((entry & Compressed) != 0)
                {
                    throw new InvalidOperationException("the base snapshot's disk has compressed clusters, which this writer does not support");
                }

                if ((entry & OffsetMask) != 0)
                {
                    AddRef(entry & OffsetMask, +1);
                }
            }
        }

        // The VM state: new L2 tables and data clusters after the end of the file.
        byte[] buffer = new byte[_clusterSize];
        long written = 0;
        for (long li = vmFirstL1; li <= vmLastL1; li++)
        {
            long l2Cluster = Allocate();
            l1[li] = (ulong)(l2Cluster * _clusterSize);
            byte[] l2Table = new byte[_clusterSize];
            ulong firstVirtual = (ulong)li << (_clusterBits + l2Bits);
            for (int j = 0; j < _clusterSize / 8 && written < vmLength; j++)
            {
                ulong virt = firstVirtual + ((ulong)j << _clusterBits);
                if (virt < vmOffset)
                {
                    continue;
                }

                ct.ThrowIfCancellationRequested();
                int n = (int)Math.Min(_clusterSize, vmLength - written);
                Array.Clear(buffer);
                if (vmstate.Read(written, buffer.AsSpan(0, n)) != n)
                {
                    throw new IOException("the new VM state could not be read");
                }

                long data = Allocate();
                WriteAt(data * _clusterSize, buffer);
                BinaryPrimitives.WriteUInt64BigEndian(l2Table.AsSpan(j * 8), (ulong)(data * _clusterSize));
                written += n;
            }

            WriteAt(l2Cluster * _clusterSize, l2Table);
        }

        // The new snapshot's L1 table.
        int l1Clusters = (int)((l1Size * 8 + _clusterSize - 1) / _clusterSize);
        long l1Cluster = AllocateContiguous(l1Clusters);
        byte[] l1Raw = new byte[l1Clusters * _clusterSize];
        for (int i = 0; i < l1.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(l1Raw.AsSpan(i * 8), l1[i] & ~Copied);
        }

        WriteAt(l1Cluster * _clusterSize, l1Raw);

        // The snapshot table: the old entries, then the new one, in new clusters.
        var table = new MemoryStream();
        long oldTableSize = 0;
        if (existing.Count > 0)
        {
            long end = existing[^1].TableOffset + EntrySize(existing[^1].Id, existing[^1].Name);
            oldTableSize = end - (long)oldTableOffset;
            table.Write(ReadAt((long)oldTableOffset, (int)oldTableSize));
        }

        string id = NextId(existing);
        var now = DateTimeOffset.UtcNow;
        WriteEntry(table, (ulong)(l1Cluster * _clusterSize), (uint)l1Size, id, name, now, base_.VmClockNanoseconds, (ulong)vmLength, diskSize);
        int tableClusters = (int)((table.Length + _clusterSize - 1) / _clusterSize);
        long tableCluster = AllocateContiguous(tableClusters);
        byte[] tableRaw = new byte[tableClusters * _clusterSize];
        table.ToArray().CopyTo(tableRaw, 0);
        WriteAt(tableCluster * _clusterSize, tableRaw);
        FlushRefcounts();
        _file.Flush(true);

        // Switch the header to the new table, then release the old table's clusters.
        byte[] header = new byte[12];
        BinaryPrimitives.WriteUInt32BigEndian(header, (uint)(existing.Count + 1));
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(4), (ulong)(tableCluster * _clusterSize));
        WriteAt(60, header);
        _file.Flush(true);
        if (oldTableSize > 0)
        {
            long first = (long)oldTableOffset / _clusterSize;
            long last = ((long)oldTableOffset + oldTableSize - 1) / _clusterSize;
            for (long c = first; c <= last; c++)
            {
                AddRef((ulong)(c * _clusterSize), -1);
            }

            FlushRefcounts();
        }

        _file.Flush(true);
    }

    private static int EntrySize(string id, string name)
    {
        int size = 40 + 24 + Encoding.UTF8.GetByteCount(id) + Encoding.UTF8.GetByteCount(name);
        return (size + 7) & ~7;
    }

    private static string NextId(List<Qcow2Snapshot> existing)
    {
        int max = 0;
        foreach (Qcow2Snapshot s in existing)
        {
            if (int.TryParse(s.Id, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) && n > max)
            {
                max = n;
            }
        }

        return (max + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    private static void WriteEntry(MemoryStream table, ulong l1Offset, uint l1Size, string id, string name, DateTimeOffset date, ulong vmClock, ulong vmStateSize, ulong diskSize)
    {
        byte[] idBytes = Encoding.UTF8.GetBytes(id);
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        byte[] e = new byte[EntrySize(id, name)];
        Span<byte> s = e;
        BinaryPrimitives.WriteUInt64BigEndian(s, l1Offset);
        BinaryPrimitives.WriteUInt32BigEndian(s[8..], l1Size);
        BinaryPrimitives.WriteUInt16BigEndian(s[12..], (ushort)idBytes.Length);
        BinaryPrimitives.WriteUInt16BigEndian(s[14..], (ushort)nameBytes.Length);
        BinaryPrimitives.WriteUInt32BigEndian(s[16..], (uint)date.ToUnixTimeSeconds());
        BinaryPrimitives.WriteUInt32BigEndian(s[20..], (uint)(date.Ticks % TimeSpan.TicksPerSecond * 100));
        BinaryPrimitives.WriteUInt64BigEndian(s[24..], vmClock);
        BinaryPrimitives.WriteUInt32BigEndian(s[32..], vmStateSize <= uint.MaxValue ? (uint)vmStateSize : 0);
        BinaryPrimitives.WriteUInt32BigEndian(s[36..], 24);
        BinaryPrimitives.WriteUInt64BigEndian(s[40..], vmStateSize);
        BinaryPrimitives.WriteUInt64BigEndian(s[48..], diskSize);
        BinaryPrimitives.WriteInt64BigEndian(s[56..], -1);
        idBytes.CopyTo(s[64..]);
        nameBytes.CopyTo(s[(64 + idBytes.Length)..]);
        table.Write(e);
    }

    private long Allocate() => AllocateContiguous(1);

    private long AllocateContiguous(int count)
    {
        long first = _nextFree;
        _nextFree += count;
        for (long c = first; c < first + count; c++)
        {
            AddRef((ulong)(c * _clusterSize), +1);
        }

        // Extend the file so later reads of these clusters see zeros, not EOF.
        if (_file.Length < _nextFree * _clusterSize)
        {
            _file.SetLength(_nextFree * _clusterSize);
        }

        return first;
    }

    private void AddRef(ulong hostOffset, int delta)
    {
        long cluster = (long)(hostOffset >> _clusterBits);
        int entriesPerBlock = (int)(_clusterSize / 2);
        long tableIndex = cluster / entriesPerBlock;
        if (tableIndex >= _refcountTable.Length)
        {
            throw new InvalidOperationException("the image's refcount table is full; growing it is not supported");
        }

        if (!_refcountBlocks.TryGetValue(tableIndex, out byte[]? block))
        {
            ulong blockOffset = _refcountTable[tableIndex];
            if (blockOffset == 0)
            {
                // A new refcount block at the end of the file; it counts itself when it covers its own cluster.
                long blockCluster = _nextFree++;
                _file.SetLength(Math.Max(_file.Length, _nextFree * _clusterSize));
                block = new byte[_clusterSize];
                _refcountTable[tableIndex] = (ulong)(blockCluster * _clusterSize);
                byte[] entry = new byte[8];
                BinaryPrimitives.WriteUInt64BigEndian(entry, (ulong)(blockCluster * _clusterSize));
                WriteAt((long)_refcountTableOffset + (tableIndex * 8), entry);
                _refcountBlocks[tableIndex] = block;
                AddRef((ulong)(blockCluster * _clusterSize), +1);
            }
            else
            {
                block = ReadAt((long)blockOffset, (int)_clusterSize);
                _refcountBlocks[tableIndex] = block;
            }
        }

        int index = (int)(cluster % entriesPerBlock) * 2;
        int value = BinaryPrimitives.ReadUInt16BigEndian(block.AsSpan(index)) + delta;
        if (value is < 0 or > ushort.MaxValue)
        {
            throw new InvalidOperationException($"refcount of cluster {cluster} would become {value}");
        }

        BinaryPrimitives.WriteUInt16BigEndian(block.AsSpan(index), (ushort)value);
    }

    private void FlushRefcounts()
    {
        foreach ((long tableIndex, byte[] block) in _refcountBlocks)
        {
            WriteAt((long)_refcountTable[tableIndex], block);
        }
    }

    private byte[] ReadAt(long offset, int length)
    {
        byte[] b = new byte[length];
        _file.Position = offset;
        _file.ReadExactly(b);
        return b;
    }

    private void WriteAt(long offset, ReadOnlySpan<byte> data)
    {
        _file.Position = offset;
        _file.Write(data);
    }
}
