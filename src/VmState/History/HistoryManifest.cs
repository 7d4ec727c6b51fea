using System.IO.Hashing;

namespace VmState.History;

/// <summary>
/// The store's manifest: what is committed. Only what it names is part of the store: the first
/// <see cref="PackLengths"/> bytes of each pack file, the first <see cref="PageCount"/> records of the page index and
/// the capture files it lists (with their lengths and hashes). It is replaced atomically (temporary file, fsync,
/// rename, fsync of the directory), so a capture interrupted at any point leaves the previous manifest in force.
/// </summary>
/// <remarks>
/// Layout (little-endian): "VMSHIST1", u32 version (1), u32 page size, u64 hash seed, u32 pages per frame, u32 pack
/// count, u64 committed length per pack, u64 page count, u32 capture count, per capture: u32 number, i64 time (Unix
/// ms), u16 + UTF-8 source, u64 stream bytes, data pages, fill pages, new pages, changed pages, bytes added, file
/// length, u128 file hash; then the XxHash128 of everything before.
/// </remarks>
internal sealed class HistoryManifest
{
    public const string FileName = "manifest";
    public const int MaxCaptures = 1_000_000;
    public const int MaxPacks = 65_536;
    public const int MaxSourceBytes = 4096;
    public const int DefaultPagesPerFrame = 32;
    private static ReadOnlySpan<byte> Magic => "VMSHIST1"u8;

    public int PageSize { get; set; } = 4096;

    public ulong Seed { get; init; }

    public int PagesPerFrame { get; init; } = DefaultPagesPerFrame;

    public List<long> PackLengths { get; init; } = [];

    public long PageCount { get; set; }

    public List<HistoryCapture> Captures { get; init; } = [];

    public HistoryManifest Clone() => new()
    {
        PageSize = PageSize,
        Seed = Seed,
        PagesPerFrame = PagesPerFrame,
        PackLengths = [.. PackLengths],
        PageCount = PageCount,
        Captures = [.. Captures],
    };

    public byte[] Serialize()
    {
        var w = new StoreFileWriter();
        w.Bytes(Magic);
        w.U32(1);
        w.U32((uint)PageSize);
        w.U64(Seed);
        w.U32((uint)PagesPerFrame);
        w.U32((uint)PackLengths.Count);
        foreach (long l in PackLengths)
        {
            w.U64((ulong)l);
        }

        w.U64((ulong)PageCount);
        w.U32((uint)Captures.Count);
        foreach (HistoryCapture c in Captures)
        {
            w.U32((uint)c.Number);
            w.I64(c.Time.ToUnixTimeMilliseconds());
            w.Str(c.Source);
            w.U64((ulong)c.StreamBytes);
            w.U64((ulong)c.DataPages);
            w.U64((ulong)c.FillPages);
            w.U64((ulong)c.NewPages);
            w.U64((ulong)c.ChangedPages);
            w.U64((ulong)c.BytesAdded);
            w.U64((ulong)c.FileLength);
            w.U128(c.FileHash);
        }

        w.U128(XxHash128.HashToUInt128(w.Written));
        return w.ToArray();
    }

    /// <summary>Parses a manifest; every count and size is bounded, the trailing hash checked (unless <paramref name="checkHash"/> is false: the fuzz target reaches the fields).</summary>
    public static HistoryManifest Parse(ReadOnlySpan<byte> data, string file, bool checkHash = true)
    {
        var r = new StoreFileReader(data, file);
        uint pageSize = r.Head(Magic, "history store manifest", checkHash);
        int at;
        ulong seed = r.U64("hash seed");
        at = r.Position;
        uint perFrame = r.U32("pages per frame");
        if (perFrame is < 1 or > 1024)
        {
            throw r.Error(at, "pages per frame", $"{perFrame} (expected 1-1024)");
        }

        var m = new HistoryManifest { PageSize = (int)pageSize, Seed = seed, PagesPerFrame = (int)perFrame };
        int packs = r.Count("pack count", MaxPacks);
        for (int i = 0; i < packs; i++)
        {
            m.PackLengths.Add((long)r.Bounded($"pack {i + 1} length", long.MaxValue));
        }

        m.PageCount = (long)r.Bounded("page count", (ulong)(long.MaxValue / PageIndex.RecordSize));
        int captures = r.Count("capture count", MaxCaptures);
        int previous = 0;
        for (int i = 0; i < captures; i++)
        {
            string f = $"capture {i + 1}";
            at = r.Position;
            int number = (int)r.U32($"{f} number");
            if (number <= previous)
            {
                throw r.Error(at, $"{f} number", $"{number} after {previous} (numbers must increase)");
            }

            previous = number;
            at = r.Position;
            long ms = r.I64($"{f} time");
            if (ms < DateTimeOffset.MinValue.ToUnixTimeMilliseconds() || ms > DateTimeOffset.MaxValue.ToUnixTimeMilliseconds())
            {
                throw r.Error(at, $"{f} time", $"{ms} ms is not a valid time");
            }

            string source = r.Str($"{f} source", MaxSourceBytes);
            const ulong Max = long.MaxValue;
            m.Captures.Add(new HistoryCapture(number, DateTimeOffset.FromUnixTimeMilliseconds(ms), source,
                (long)r.Bounded($"{f} stream bytes", Max), (long)r.Bounded($"{f} data pages", Max),
                (long)r.Bounded($"{f} fill pages", Max), (long)r.Bounded($"{f} new pages", Max),
                (long)r.Bounded($"{f} changed pages", Max), (long)r.Bounded($"{f} bytes added", Max))
            {
                FileLength = (long)r.Bounded($"{f} file length", CaptureFile.MaxFileBytes),
                FileHash = r.U128($"{f} file hash"),
            });
        }

        r.Take(16, "checksum");
        r.End();
        return m;
    }
}
