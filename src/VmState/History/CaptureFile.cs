using System.IO.Hashing;
using VmState.Formats;
using ZstdSharp;

namespace VmState.History;

/// <summary>
/// One capture's file: the stream's bytes outside page records (the frame, zstd-compressed) and the page map of each
/// RAM block. Layout (little-endian): "VMSHCAP1", u32 version 1, u32 page size, u32 frame length, u32 compressed
/// length, the compressed frame, u32 block count, per block u16 + UTF-8 name, u64 length and its
/// <see cref="PageMap"/>; then the XxHash128 of everything before. Written once, never changed.
/// </summary>
internal sealed class CaptureFile
{
    public const long MaxFileBytes = 1L << 31;
    private static ReadOnlySpan<byte> Magic => "VMSHCAP1"u8;

    public CaptureFile(int pageSize, byte[] frame, IReadOnlyList<(string Name, ulong Length)> blocks, IReadOnlyList<PageRunMap> maps)
    {
        PageSize = pageSize;
        Frame = frame;
        Blocks = blocks;
        Maps = maps;
    }

    public int PageSize { get; }

    public byte[] Frame { get; }

    public IReadOnlyList<(string Name, ulong Length)> Blocks { get; }

    public IReadOnlyList<PageRunMap> Maps { get; }

    public static string Name(int number) => $"capture-{number:D6}";

    public byte[] Serialize()
    {
        var w = new StoreFileWriter();
        w.Bytes(Magic);
        w.U32(1);
        w.U32((uint)PageSize);
        using var compressor = new Compressor(3);
        byte[] packed = compressor.Wrap(Frame).ToArray();
        w.U32((uint)Frame.Length);
        w.U32((uint)packed.Length);
        w.Bytes(packed);
        w.U32((uint)Blocks.Count);
        for (int i = 0; i < Blocks.Count; i++)
        {
            w.Str(Blocks[i].Name);
            w.U64(Blocks[i].Length);
            PageMap.Encode(w, Maps[i]);
        }

        w.U128(XxHash128.HashToUInt128(w.Written));
        return w.ToArray();
    }

    /// <summary>
    /// Parses a capture file; counts and sizes are bounded (the blocks by <see cref="ReaderLimits.MaxGuestRam"/>; a page
    /// map is kept as its runs, so memory follows the file's size), the trailing hash (unless <paramref name="checkHash"/> is false: the fuzz
    /// target reaches the fields) and the page ids checked.
    /// </summary>
    public static CaptureFile Parse(ReadOnlySpan<byte> data, string file, long pageCount, ReaderLimits? limits = null, bool checkHash = true)
    {
        limits ??= ReaderLimits.Default;
        var r = new StoreFileReader(data, file);
        uint pageSize = r.Head(Magic, "history store capture file", checkHash);
        int at;
        int frameLength = r.Count("frame length", MigrationStreamSplitter.MaxFrameBytes);
        int packedLength = r.Count("compressed frame length", r.Remaining);
        at = r.Position;
        ReadOnlySpan<byte> packed = r.Take(packedLength, "compressed frame");
        byte[] frame = new byte[frameLength];
        try
        {
            using var decompressor = new Decompressor();
            int n = decompressor.Unwrap(packed, frame);
            if (n != frameLength)
            {
                throw r.Error(at, "compressed frame", $"decompresses to {n} bytes, {frameLength} expected");
            }
        }
        catch (ZstdException e)
        {
            throw r.Error(at, "compressed frame", $"not a valid zstd frame of {frameLength} bytes: {e.Message}");
        }

        int count = r.Count("block count", limits.MaxRamBlocks);
        var blocks = new List<(string, ulong)>(count);
        var maps = new List<PageRunMap>(count);
        ulong total = 0;
        for (int i = 0; i < count; i++)
        {
            string name = r.Str($"block {i} name", 255);
            at = r.Position;
            ulong length = r.U64($"block {i} length");
            if (length == 0 || length > limits.MaxGuestRam - total)
            {
                throw r.Error(at, $"block {i} length", $"0x{length:x} (the blocks may add up to at most 0x{limits.MaxGuestRam:x})");
            }

            total += length;
            long pages = (long)((length + pageSize - 1) / pageSize);
            blocks.Add((name, length));
            maps.Add(PageMap.Decode(ref r, pages, pageCount, $"block \"{name}\" page map"));
        }

        r.Take(16, "checksum");
        r.End();
        return new CaptureFile((int)pageSize, frame, blocks, maps);
    }
}
