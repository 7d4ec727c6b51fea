using System.Buffers.Binary;

namespace VmState.History;

/// <summary>
/// The page index file: one fixed-size record per unique page, its content id being its record number. A record is
/// the page's XxHash128 (seeded with the store's seed), the pack, the offset and compressed length of the zstd frame
/// that holds it, its slot in the frame and the frame's page count (little-endian: u128, u32, u64, u32, u16, u16, u32
/// reserved 0). The file starts with "VMSHIDX1", u32 version 1, u32 record size.
/// </summary>
internal static class PageIndex
{
    public const string FileName = "pages.idx";
    public const int RecordSize = 40;
    public const int HeaderSize = 16;

    /// <summary>Compressed frames larger than this are refused (a frame of 1024 64 KiB pages cannot need more).</summary>
    public const int MaxFrameBytes = 80 * 1024 * 1024;

    public static ReadOnlySpan<byte> Magic => "VMSHIDX1"u8;

    public static byte[] Header()
    {
        byte[] h = new byte[HeaderSize];
        Magic.CopyTo(h);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(12), RecordSize);
        return h;
    }

    public static void CheckHeader(ReadOnlySpan<byte> h, string file)
    {
        var r = new StoreFileReader(h, file);
        r.Magic(Magic, "history store page index");
        r.Version1();
        int at = r.Position;
        uint size = r.U32("record size");
        if (size != RecordSize)
        {
            throw r.Error(at, "record size", $"{size} (expected {RecordSize})");
        }
    }

    public static void Write(Span<byte> record, in PageLocation p)
    {
        BinaryPrimitives.WriteUInt128LittleEndian(record, p.Hash);
        BinaryPrimitives.WriteUInt32LittleEndian(record[16..], (uint)p.Pack);
        BinaryPrimitives.WriteUInt64LittleEndian(record[20..], (ulong)p.FrameOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(record[28..], (uint)p.FrameLength);
        BinaryPrimitives.WriteUInt16LittleEndian(record[32..], (ushort)p.Slot);
        BinaryPrimitives.WriteUInt16LittleEndian(record[34..], (ushort)p.FramePages);
        BinaryPrimitives.WriteUInt32LittleEndian(record[36..], 0);
    }

    /// <summary>Decodes record <paramref name="id"/> and checks it against the committed packs of <paramref name="manifest"/>.</summary>
    public static PageLocation Read(ReadOnlySpan<byte> record, long id, HistoryManifest manifest, string file)
    {
        long at = HeaderSize + (id * RecordSize);
        var r = new StoreFileReader(record, file);
        string f = $"page {id} record";
        UInt128 hash = r.U128($"{f} hash");
        uint pack = r.U32($"{f} pack");
        ulong offset = r.U64($"{f} frame offset");
        uint length = r.U32($"{f} frame length");
        ushort slot = r.U16($"{f} slot");
        ushort pages = r.U16($"{f} frame pages");
        uint reserved = r.U32($"{f} reserved");
        VmState.IO.VmStateFormatException Bad(string field, string problem) => new(at, $"{file}: {f} {field}", problem);
        if (pack >= (uint)manifest.PackLengths.Count)
        {
            throw Bad("pack", $"pack {pack + 1}, but the store has {manifest.PackLengths.Count}");
        }

        if (length is 0 or > MaxFrameBytes || offset < PackFile.HeaderSize || offset > (ulong)manifest.PackLengths[(int)pack] || length > (ulong)manifest.PackLengths[(int)pack] - offset)
        {
            throw Bad("frame", $"{length} bytes at offset {offset} are not inside the committed {manifest.PackLengths[(int)pack]} bytes of pack {pack + 1}");
        }

        if (pages < 1 || pages > manifest.PagesPerFrame || slot >= pages)
        {
            throw Bad("slot", $"slot {slot} of a {pages}-page frame (frames hold 1-{manifest.PagesPerFrame} pages)");
        }

        if (reserved != 0)
        {
            throw Bad("reserved", $"0x{reserved:x} (expected 0)");
        }

        return new PageLocation(hash, (int)pack, (long)offset, (int)length, slot, pages);
    }
}

/// <summary>Where a unique page is: its hash, and its zstd frame (pack, offset, length) and slot.</summary>
internal readonly record struct PageLocation(UInt128 Hash, int Pack, long FrameOffset, int FrameLength, int Slot, int FramePages);

/// <summary>A pack file: "VMSHPACK", u32 version 1, u32 0, then zstd frames (each a run of whole pages).</summary>
internal static class PackFile
{
    public const int HeaderSize = 16;

    /// <summary>A new pack is started when the current one would grow past this.</summary>
    public const long MaxBytes = 1L << 30;

    public static ReadOnlySpan<byte> Magic => "VMSHPACK"u8;

    public static string Name(int pack) => $"pack-{pack + 1:D6}";

    public static byte[] Header()
    {
        byte[] h = new byte[HeaderSize];
        Magic.CopyTo(h);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), 1);
        return h;
    }

    public static void CheckHeader(ReadOnlySpan<byte> h, string file)
    {
        var r = new StoreFileReader(h, file);
        r.Magic(Magic, "history store pack");
        r.Version1();
    }
}
