using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using VmState.Formats;
using VmState.Formats.Migration;
using VmState.IO;

namespace VmState.Snapshots;

/// <summary>
/// What an <see cref="IndexCache"/> entry records about its input file, read before the file is parsed: device and
/// inode, size, modification time in .NET ticks (100 ns), and a SHA-256 of the first and last 64 KiB.
/// </summary>
internal readonly record struct IndexCacheFileKey(ulong Device, ulong Inode, long Size, long ModifiedTicks, byte[] HeaderHash)
{
    /// <summary>Bytes hashed at each end of the file.</summary>
    public const int HashedBytes = 64 * 1024;

    /// <summary>The key of <paramref name="path"/> (stat), with the header hash read from <paramref name="file"/>; null when it cannot be told (not Linux, not a regular file).</summary>
    public static IndexCacheFileKey? Of(string path, IRandomAccessSource file)
    {
        if (!Stat(path, out ulong device, out ulong inode, out long size, out long ticks) || size != file.Length)
        {
            return null;
        }

        int head = (int)Math.Min(HashedBytes, size);
        int tail = (int)Math.Min(HashedBytes, size);
        byte[] bytes = new byte[head + tail];
        if (file.Read(0, bytes.AsSpan(0, head)) != head || file.Read(size - tail, bytes.AsSpan(head)) != tail)
        {
            return null;
        }

        return new IndexCacheFileKey(device, inode, size, ticks, SHA256.HashData(bytes));
    }

    /// <summary>True when <paramref name="path"/> still has this key's device, inode, size and modification time.</summary>
    public bool StillDescribes(string path) =>
        Stat(path, out ulong device, out ulong inode, out long size, out long ticks)
        && device == Device && inode == Inode && size == Size && ticks == ModifiedTicks;

    private static bool Stat(string path, out ulong device, out ulong inode, out long size, out long ticks)
    {
        device = inode = 0;
        size = ticks = 0;
        if (!FileIdentity.TryGet(path, out FileIdentity identity))
        {
            return false;
        }

        var info = new FileInfo(path);
        if (!info.Exists || (info.Attributes & (FileAttributes.Directory | FileAttributes.Device)) != 0)
        {
            return false;
        }

        device = identity.Device;
        inode = identity.Inode;
        size = info.Length;
        ticks = info.LastWriteTimeUtc.Ticks;
        return true;
    }
}

/// <summary>
/// Reads and writes <see cref="IndexCache"/> entries. An entry file is: a 6-byte magic ("VMSIDX" for a RAM index,
/// "VMSNTE" for a note), format version (2 bytes, little-endian), then little-endian device, inode, size, modification
/// ticks (8 bytes each), the 32-byte header hash, the indexed stream's length (8), the stream key (2-byte length,
/// UTF-8: which stream of the file, e.g. a qcow2 snapshot id; a note's key adds its kind), the payload (8-byte length,
/// bytes: the <see cref="RamIndexRecord"/>, or the note), and a SHA-256 of everything before it.
/// </summary>
internal static class IndexCacheEntry
{
    /// <summary>Largest entry file read (a record of a 1 TiB guest whose pages are in no order would be bigger; it is then simply not cached).</summary>
    public const int MaxEntryBytes = 256 << 20;

    /// <summary>Largest note kept (notes are small: where a kernel is, not its data).</summary>
    public const int MaxNoteBytes = 1 << 20;

    private const int MaxStreamKeyBytes = 1024;
    private const ushort Version = 1;
    private static readonly byte[] s_indexMagic = "VMSIDX"u8.ToArray();
    private static readonly byte[] s_noteMagic = "VMSNTE"u8.ToArray();

    /// <summary>The entry's file name for this file and stream: a hash of device, inode and stream key.</summary>
    public static string FileName(IndexCacheFileKey key, string streamKey) => FileName(key, streamKey, ".idx");

    /// <summary>The stream key a note of <paramref name="kind"/> is kept under.</summary>
    public static string NoteKey(string streamKey, string kind) => $"{streamKey}\0note:{kind}";

    private static string FileName(IndexCacheFileKey key, string streamKey, string extension)
    {
        byte[] id = Encoding.UTF8.GetBytes($"{key.Device:x}:{key.Inode}:{streamKey}");
        return Convert.ToHexStringLower(SHA256.HashData(id).AsSpan(0, 16)) + extension;
    }

    /// <summary>
    /// The cached RAM index for the stream <paramref name="streamKey"/> of the file <paramref name="key"/>
    /// describes, or null when there is none or it does not fit (the <paramref name="why"/> says which).
    /// </summary>
    public static RamIndexRecord? TryLoad(IndexCache cache, IndexCacheFileKey key, string streamKey, long streamLength, ReaderLimits limits, out string why)
    {
        byte[]? bytes = ReadEntryFile(cache, FileName(key, streamKey), MaxEntryBytes, out why);
        if (bytes is null)
        {
            return null;
        }

        try
        {
            return Decode(bytes, key, streamKey, streamLength, limits, out why);
        }
        catch (VmStateFormatException e)
        {
            why = $"entry corrupt: {e.Message}";
            return null;
        }
    }

    /// <summary>The note of <paramref name="kind"/> for this file and stream, or null (the <paramref name="why"/> says why).</summary>
    public static byte[]? TryLoadNote(IndexCache cache, IndexCacheFileKey key, string streamKey, long streamLength, string kind, out string why)
    {
        string noteKey = NoteKey(streamKey, kind);
        byte[]? bytes = ReadEntryFile(cache, FileName(key, noteKey, ".note"), MaxNoteBytes + 1024, out why);
        if (bytes is null)
        {
            return null;
        }

        try
        {
            return Unwrap(bytes, s_noteMagic, "index cache note", key, noteKey, streamLength, out why) is Range r ? bytes[r] : null;
        }
        catch (VmStateFormatException e)
        {
            why = $"note corrupt: {e.Message}";
            return null;
        }
    }

    /// <summary>Decodes an entry; null (with the reason) when it is for another file state or stream.</summary>
    /// <exception cref="VmStateFormatException">The bytes are not a well-formed entry.</exception>
    public static RamIndexRecord? Decode(ReadOnlySpan<byte> bytes, IndexCacheFileKey key, string streamKey, long streamLength, ReaderLimits limits, out string why) =>
        Unwrap(bytes, s_indexMagic, "RAM index cache entry", key, streamKey, streamLength, out why) is Range r
            ? RamIndexRecord.Decode(bytes[r], streamLength, limits)
            : null;

    /// <summary>Encodes an entry.</summary>
    public static byte[] Encode(IndexCacheFileKey key, string streamKey, long streamLength, RamIndexRecord record) =>
        Wrap(s_indexMagic, key, streamKey, streamLength, record.Encode());

    /// <summary>Encodes a note of <paramref name="kind"/>.</summary>
    public static byte[] EncodeNote(IndexCacheFileKey key, string streamKey, long streamLength, string kind, ReadOnlySpan<byte> note) =>
        Wrap(s_noteMagic, key, NoteKey(streamKey, kind), streamLength, note);

    /// <summary>
    /// Writes the entry for <paramref name="stream"/> atomically (a temporary file in the cache directory, mode 0600,
    /// renamed over the entry; the directory is created with mode 0700). Returns false, with the reason, when it was
    /// not written (an I/O or permission problem, or an index too big to be worth keeping).
    /// </summary>
    public static bool TryStore(IndexCache cache, IndexCacheFileKey key, string streamKey, MigrationStream stream, out string why)
    {
        var record = new RamIndexRecord(stream.PageSize, stream.RamBlocks, stream.RamChunks);
        byte[] bytes = Encode(key, streamKey, stream.Source.Length, record);
        if (bytes.Length > MaxEntryBytes)
        {
            why = $"the index takes {bytes.Length} bytes, over the {MaxEntryBytes}-byte limit";
            return false;
        }

        return WriteEntryFile(cache, FileName(key, streamKey), bytes, out why);
    }

    /// <summary>Writes a note atomically, as <see cref="TryStore"/> writes an index.</summary>
    public static bool TryStoreNote(IndexCache cache, IndexCacheFileKey key, string streamKey, long streamLength, string kind, ReadOnlySpan<byte> note, out string why)
    {
        if (note.Length > MaxNoteBytes)
        {
            why = $"the note takes {note.Length} bytes, over the {MaxNoteBytes}-byte limit";
            return false;
        }

        return WriteEntryFile(cache, FileName(key, NoteKey(streamKey, kind), ".note"), EncodeNote(key, streamKey, streamLength, kind, note), out why);
    }

    /// <summary>Checks an entry's envelope; the payload's range, or null (with the reason) when it is for another file state or stream.</summary>
    /// <exception cref="VmStateFormatException">The bytes are not a well-formed entry.</exception>
    private static Range? Unwrap(ReadOnlySpan<byte> bytes, byte[] magic, string s, IndexCacheFileKey key, string streamKey, long streamLength, out string why)
    {
        const int Fixed = 6 + 2 + 32 + 32 + 8 + 2;
        if (bytes.Length < Fixed + 8 + 32)
        {
            throw new VmStateFormatException(0, s, $"{bytes.Length} bytes is too short");
        }

        ReadOnlySpan<byte> body = bytes[..^32];
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(bytes[^32..]))
        {
            throw new VmStateFormatException(bytes.Length - 32, s, "its SHA-256 does not match its contents");
        }

        if (!body[..6].SequenceEqual(magic) || BinaryPrimitives.ReadUInt16LittleEndian(body[6..]) != Version)
        {
            throw new VmStateFormatException(0, s, "not an index cache entry of this version");
        }

        ulong device = BinaryPrimitives.ReadUInt64LittleEndian(body[8..]);
        ulong inode = BinaryPrimitives.ReadUInt64LittleEndian(body[16..]);
        long size = BinaryPrimitives.ReadInt64LittleEndian(body[24..]);
        long ticks = BinaryPrimitives.ReadInt64LittleEndian(body[32..]);
        ReadOnlySpan<byte> headerHash = body.Slice(40, 32);
        long length = BinaryPrimitives.ReadInt64LittleEndian(body[72..]);
        int keyLength = BinaryPrimitives.ReadUInt16LittleEndian(body[80..]);
        if (keyLength > MaxStreamKeyBytes || Fixed + keyLength + 8 > body.Length)
        {
            throw new VmStateFormatException(80, s, $"stream key of {keyLength} bytes");
        }

        string entryStreamKey = Encoding.UTF8.GetString(body.Slice(Fixed, keyLength));
        ulong payloadLength = BinaryPrimitives.ReadUInt64LittleEndian(body[(Fixed + keyLength)..]);
        int payloadStart = Fixed + keyLength + 8;
        if (payloadLength != (ulong)(body.Length - payloadStart))
        {
            throw new VmStateFormatException(Fixed + keyLength, s, $"record of {payloadLength} bytes, but {body.Length - payloadStart} follow");
        }

        if (device != key.Device || inode != key.Inode || size != key.Size || ticks != key.ModifiedTicks
            || !headerHash.SequenceEqual(key.HeaderHash) || length != streamLength || entryStreamKey != streamKey)
        {
            why = "the file changed since the entry was written";
            return null;
        }

        why = "hit";
        return payloadStart..body.Length;
    }

    private static byte[] Wrap(byte[] magic, IndexCacheFileKey key, string streamKey, long streamLength, ReadOnlySpan<byte> payload)
    {
        byte[] streamKeyBytes = Encoding.UTF8.GetBytes(streamKey);
        if (streamKeyBytes.Length > MaxStreamKeyBytes)
        {
            throw new ArgumentException($"stream key of {streamKeyBytes.Length} bytes", nameof(streamKey));
        }

        using var ms = new MemoryStream();
        Span<byte> head = stackalloc byte[82];
        magic.CopyTo(head);
        BinaryPrimitives.WriteUInt16LittleEndian(head[6..], Version);
        BinaryPrimitives.WriteUInt64LittleEndian(head[8..], key.Device);
        BinaryPrimitives.WriteUInt64LittleEndian(head[16..], key.Inode);
        BinaryPrimitives.WriteInt64LittleEndian(head[24..], key.Size);
        BinaryPrimitives.WriteInt64LittleEndian(head[32..], key.ModifiedTicks);
        key.HeaderHash.CopyTo(head[40..]);
        BinaryPrimitives.WriteInt64LittleEndian(head[72..], streamLength);
        BinaryPrimitives.WriteUInt16LittleEndian(head[80..], (ushort)streamKeyBytes.Length);
        ms.Write(head);
        ms.Write(streamKeyBytes);
        Span<byte> n = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(n, (ulong)payload.Length);
        ms.Write(n);
        ms.Write(payload);
        ms.Write(SHA256.HashData(ms.GetBuffer().AsSpan(0, (int)ms.Length)));
        return ms.ToArray();
    }

    /// <summary>An entry file's bytes, or null (with the reason) when it is missing, too big or not to be trusted.</summary>
    private static byte[]? ReadEntryFile(IndexCache cache, string fileName, int maxBytes, out string why)
    {
        string path = Path.Combine(cache.Directory, fileName);
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                why = "no entry";
                return null;
            }

            // An entry others could have written is not trusted (a forged index could point pages elsewhere in the
            // stream): neither the entry nor the directory may be writable by group or others.
            const UnixFileMode OthersWrite = UnixFileMode.GroupWrite | UnixFileMode.OtherWrite;
            if (!OperatingSystem.IsWindows() && ((info.UnixFileMode & OthersWrite) != 0 || (File.GetUnixFileMode(cache.Directory) & OthersWrite) != 0))
            {
                why = "not used: the entry or its directory is writable by group or others";
                return null;
            }

            if (info.Length > maxBytes)
            {
                why = $"entry of {info.Length} bytes is over the {maxBytes}-byte limit";
                return null;
            }

            why = "read";
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            why = $"entry not readable: {e.Message}";
            return null;
        }
    }

    private static bool WriteEntryFile(IndexCache cache, string fileName, byte[] bytes, out string why)
    {
        string path = Path.Combine(cache.Directory, fileName);
        string temp = Path.Combine(cache.Directory, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            PrivateDirectory.Create(cache.Directory);

            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using (var f = new FileStream(temp, options))
            {
                // No fsync: an entry is only a shortcut, checked by its SHA-256 on every load; one torn by a crash
                // is ignored and written again, and waiting for the disk would cost a first run more than the entry saves.
                f.Write(bytes);
            }

            File.Move(temp, path, overwrite: true);
            why = $"written ({bytes.Length} bytes)";
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try
            {
                File.Delete(temp);
            }
            catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException)
            {
                // Best effort: a stray temporary file in the cache directory is harmless.
            }

            why = $"not written: {e.Message}";
            return false;
        }
    }
}
