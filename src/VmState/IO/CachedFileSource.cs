using Microsoft.Win32.SafeHandles;

namespace VmState.IO;

/// <summary>
/// A file read with positional reads through a small block cache, for random-access introspection (page-table
/// walks, kernel structures, a GDB session): a read that hits the cache is a memory copy, no system call.
/// The file is deliberately not memory-mapped: a mapped file that another program truncates or rewrites kills the
/// reader with SIGBUS, which .NET cannot catch. Here the same event is a short <c>pread</c>, reported as
/// <see cref="InputChangedException"/>. Blocks live in a direct-mapped table of at most
/// <see cref="DefaultCacheBytes"/> (allocated as used); reads of a block or more bypass the cache, so one-pass
/// bulk reads neither evict the working set nor copy twice.
/// </summary>
public sealed class CachedFileSource : IRandomAccessSource
{
    /// <summary>The cache's largest size.</summary>
    public const int DefaultCacheBytes = 64 << 20;

    private const int BlockShift = 14;
    private const int BlockSize = 1 << BlockShift;

    private readonly SafeFileHandle _handle;
    private readonly Block?[] _slots;

    /// <summary>Opens <paramref name="path"/> read-only with a cache of up to <paramref name="cacheBytes"/>.</summary>
    public CachedFileSource(string path, int cacheBytes = DefaultCacheBytes)
    {
        _handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        Name = path;
        Length = RandomAccess.GetLength(_handle);
        _slots = new Block?[Math.Max(1, cacheBytes / BlockSize)];
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
            Block block = _slots[index % _slots.Length] is { } cached && cached.Index == index ? cached : Load(index);
            int within = (int)(at & (BlockSize - 1));
            int n = Math.Min(wanted - done, block.Data.Length - within);
            block.Data.AsSpan(within, n).CopyTo(destination[done..]);
            done += n;
        }

        return wanted;
    }

    /// <inheritdoc />
    public void Dispose() => _handle.Dispose();

    private Block Load(long index)
    {
        long start = index << BlockShift;
        byte[] data = new byte[(int)Math.Min(BlockSize, Length - start)];
        FileSource.ReadExactly(_handle, Name, Length, start, data);
        var block = new Block(index, data);
        // A reference store is atomic: a concurrent reader sees the old block or the new one, both complete.
        _slots[index % _slots.Length] = block;
        return block;
    }

    private sealed record Block(long Index, byte[] Data);
}
