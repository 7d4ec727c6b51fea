using Microsoft.Win32.SafeHandles;

namespace VmState.IO;

/// <summary>
/// A file read with positional reads through a small block cache, for random-access introspection (page-table
/// walks, kernel structures, a GDB session): a read that hits the cache is a memory copy, no system call.
/// The file is deliberately not memory-mapped: a mapped file that another program truncates or rewrites kills the
/// reader with SIGBUS, which .NET cannot catch. Here the same event is a short <c>pread</c>, reported as
/// <see cref="InputChangedException"/>. 64 KiB blocks live in a direct-mapped table of at most
/// <see cref="DefaultCacheBytes"/> and never more than the file (allocated as used); reads of a block or more bypass
/// the cache, so one-pass bulk reads neither evict the working set nor copy twice.
/// </summary>
public sealed class CachedFileSource : IRandomAccessSource
{
    /// <summary>The cache's largest size.</summary>
    public const int DefaultCacheBytes = 256 << 20;

    private const int BlockShift = 16;
    private const int BlockSize = 1 << BlockShift;

    private readonly SafeFileHandle _handle;
    private readonly Slot?[] _slots;
    private readonly long _mask;

    /// <summary>Opens <paramref name="path"/> read-only with a cache of up to <paramref name="cacheBytes"/> (never more than the file).</summary>
    public CachedFileSource(string path, int cacheBytes = DefaultCacheBytes)
    {
        _handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        Name = path;
        Length = RandomAccess.GetLength(_handle);
        // A power of two, so the slot of a block is a mask, not a division (this is the hit path of every read).
        long blocks = (Length + BlockSize - 1) >> BlockShift;
        int limit = Math.Max(1, cacheBytes / BlockSize);
        int slots = 1;
        while (slots < blocks && slots * 2 <= limit)
        {
            slots *= 2;
        }

        _slots = new Slot?[slots];
        _mask = _slots.Length - 1;
    }

    /// <inheritdoc />
    public long Length { get; }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public int Read(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset >= Length || destination.IsEmpty)
        {
            return 0;
        }

        int wanted = (int)Math.Min(destination.Length, Length - offset);
        destination = destination[..wanted];
        if (wanted >= BlockSize)
        {
            FileSource.ReadExactly(_handle, Name, Length, offset, destination);
            return wanted;
        }

        int done = 0;
        while (done < wanted)
        {
            long at = offset + done;
            long index = at >> BlockShift;
            int within = (int)(at & (BlockSize - 1));
            Slot slot = _slots[index & _mask] ??= new Slot();
            int n;
            // The hit path takes no lock: the slot's version is odd while the buffer is being refilled, so a copy
            // made while the version stayed the same, even, and for this block is a copy of this block.
            int version = Volatile.Read(ref slot.Version);
            if ((version & 1) == 0 && Volatile.Read(ref slot.Index) == index)
            {
                n = Math.Min(wanted - done, slot.Length - within);
                slot.Data.AsSpan(within, n).CopyTo(destination[done..]);
                if (Volatile.Read(ref slot.Version) == version)
                {
                    done += n;
                    continue;
                }
            }

            // A miss (or a refill raced with the copy): refill under the lock. The buffer is reused, so a miss
            // allocates nothing.
            lock (slot)
            {
                if (slot.Index != index)
                {
                    Volatile.Write(ref slot.Version, slot.Version + 1);
                    long start = index << BlockShift;
                    try
                    {
                        slot.Index = -1;
                        slot.Length = (int)Math.Min(BlockSize, Length - start);
                        FileSource.ReadExactly(_handle, Name, Length, start, slot.Data.AsSpan(0, slot.Length));
                        Volatile.Write(ref slot.Index, index);
                    }
                    finally
                    {
                        Volatile.Write(ref slot.Version, slot.Version + 1);
                    }
                }

                n = Math.Min(wanted - done, slot.Length - within);
                slot.Data.AsSpan(within, n).CopyTo(destination[done..]);
                done += n;
            }
        }

        return wanted;
    }

    /// <inheritdoc />
    public void Dispose() => _handle.Dispose();

    private sealed class Slot
    {
        public readonly byte[] Data = GC.AllocateUninitializedArray<byte>(BlockSize);
        public long Index = -1;
        public int Length;
        public int Version;
    }
}
