using VmState.Machine;

namespace VmState.Snapshots;

/// <summary>
/// Notes about one stream of one snapshot file, kept in an <see cref="IndexCache"/> beside its RAM index and checked
/// against the same file identity (device, inode, size, modification time, and a hash of its first and last 64 KiB).
/// A note is written only while the file is still the one that was read.
/// </summary>
internal sealed class IndexCacheNotes(IndexCache cache, IndexCacheFileKey key, string streamKey, long streamLength, string path) : IMachineNotes
{
    /// <inheritdoc />
    public byte[]? Read(string kind)
    {
        ArgumentException.ThrowIfNullOrEmpty(kind);
        byte[]? note = IndexCacheEntry.TryLoadNote(cache, key, streamKey, streamLength, kind, out string why);
        cache.Report?.Invoke($"note {kind}: {(note is null ? why : "hit")}");
        return note;
    }

    /// <inheritdoc />
    public void Write(string kind, ReadOnlySpan<byte> value)
    {
        ArgumentException.ThrowIfNullOrEmpty(kind);
        if (!key.StillDescribes(path))
        {
            cache.Report?.Invoke($"note {kind}: not written: the file changed since it was read");
            return;
        }

        IndexCacheEntry.TryStoreNote(cache, key, streamKey, streamLength, kind, value, out string why);
        cache.Report?.Invoke($"note {kind}: {why}");
    }
}
