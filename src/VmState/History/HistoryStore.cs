using System.Buffers.Binary;
using System.Globalization;
using System.IO.Hashing;
using Microsoft.Win32.SafeHandles;
using VmState.Formats;
using VmState.Formats.Migration;
using VmState.Formats.Migration.Devices;
using VmState.IO;
using VmState.Machine;
using ZstdSharp;

namespace VmState.History;

/// <summary>
/// A history store opened for reading: its captures (<see cref="Captures"/>), each opened as a
/// <see cref="MachineState"/> with random access to its pages (<see cref="OpenCapture(HistoryCapture, IReadOnlyList{string}?, ReaderLimits?)"/>: one page read decompresses
/// one frame of the pack that holds it, nothing is materialised), written back out as a migration stream QEMU
/// resumes (<see cref="Export"/>), or checked end to end (<see cref="Verify"/>). What it reads is fixed when it is
/// opened: captures a writer commits later are not seen. Safe for concurrent reads.
/// </summary>
public sealed class HistoryStore : IDisposable
{
    private const int CachedFrames = 64;
    private readonly object _gate = new();
    private readonly HistoryManifest _manifest;
    private readonly SafeFileHandle _index;
    private readonly SafeFileHandle?[] _packs;
    private readonly Dictionary<(int Pack, long Offset), LinkedListNode<(int Pack, long Offset, byte[] Pages)>> _frames = [];
    private readonly LinkedList<(int Pack, long Offset, byte[] Pages)> _lru = new();
    private readonly Decompressor _decompressor = new();
    private (byte[] Data, Dictionary<int, (int Offset, int Length)> Records)? _indexLog;
    private bool _indexLogRead;
    private int _disposed;

    private HistoryStore(string dir, HistoryManifest manifest, SafeFileHandle index)
    {
        Directory = dir;
        _manifest = manifest;
        _index = index;
        _packs = new SafeFileHandle?[manifest.PackLengths.Count];
    }

    /// <summary>The store directory.</summary>
    public string Directory { get; }

    /// <summary>The captures, oldest first.</summary>
    public IReadOnlyList<HistoryCapture> Captures => _manifest.Captures;

    /// <summary>Unique pages stored.</summary>
    public long UniquePages => _manifest.PageCount;

    /// <summary>The guest page size of the store's captures.</summary>
    public int PageSize => _manifest.PageSize;

    /// <summary>Opens the store in <paramref name="directory"/> read-only.</summary>
    /// <exception cref="FileNotFoundException">The directory holds no store.</exception>
    /// <exception cref="VmStateFormatException">The manifest or page index is damaged (file, offset and field named).</exception>
    public static HistoryStore Open(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string dir = Path.GetFullPath(directory);
        string manifestPath = Path.Combine(dir, HistoryManifest.FileName);
        if (!File.Exists(manifestPath))
        {
            throw new FileNotFoundException($"{dir} is not a history store (it has no {HistoryManifest.FileName}; create one with `vmstate history import --store {directory} SNAPSHOT`)", manifestPath);
        }

        HistoryManifest manifest = HistoryManifest.Parse(File.ReadAllBytes(manifestPath), manifestPath);
        string indexPath = Path.Combine(dir, PageIndex.FileName);
        SafeFileHandle index = File.OpenHandle(indexPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        try
        {
            byte[] h = new byte[PageIndex.HeaderSize];
            if (RandomAccess.Read(index, h, 0) != h.Length)
            {
                throw new VmStateFormatException(0, $"{indexPath}: header", "the file is shorter than its 16-byte header");
            }

            PageIndex.CheckHeader(h, indexPath);
            long need = PageIndex.HeaderSize + (manifest.PageCount * PageIndex.RecordSize);
            long have = RandomAccess.GetLength(index);
            if (have < need)
            {
                throw new VmStateFormatException(have, $"{indexPath}: length", $"the manifest commits {manifest.PageCount} page records ({need} bytes), the file has {have} bytes");
            }

            return new HistoryStore(dir, manifest, index);
        }
        catch
        {
            index.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Splits a snapshot reference <c>STORE@SELECTOR</c> when STORE is a directory holding a store: the selector is a
    /// capture number (1 is the first), a negative number counting from the latest (-1), or a time (the latest
    /// capture at or before it; UTC unless the text gives an offset).
    /// </summary>
    public static bool TryParseReference(string text, out string directory, out string selector)
    {
        ArgumentNullException.ThrowIfNull(text);
        int at = text.LastIndexOf('@');
        directory = at > 0 ? text[..at] : "";
        selector = at > 0 ? text[(at + 1)..] : "";
        return at > 0 && selector.Length > 0 && File.Exists(Path.Combine(directory, HistoryManifest.FileName));
    }

    /// <summary>
    /// The capture <paramref name="selector"/> names: its number, a negative index from the latest (-1), or a time
    /// (the latest capture at or before it).
    /// </summary>
    /// <exception cref="VmStateNotFoundException">No capture matches (<see cref="VmStateObjectKind.Snapshot"/>).</exception>
    public HistoryCapture Find(string selector)
    {
        ArgumentNullException.ThrowIfNull(selector);
        IReadOnlyList<HistoryCapture> all = Captures;
        string range = all.Count == 0 ? "the store has no captures" : $"the store has captures {all[0].Number}-{all[^1].Number}, from {all[0].Time:yyyy-MM-ddTHH:mm:ss}Z to {all[^1].Time:yyyy-MM-ddTHH:mm:ss}Z";
        if (int.TryParse(selector, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int n))
        {
            HistoryCapture? hit = null;
            if (n < 0 && -n <= all.Count)
            {
                hit = all[all.Count + n];
            }
            else if (n > 0)
            {
                foreach (HistoryCapture c in all)
                {
                    if (c.Number == n)
                    {
                        hit = c;
                    }
                }
            }

            return hit ?? throw new VmStateNotFoundException(VmStateObjectKind.Snapshot, selector, $"{Directory} has no capture {selector}; {range}");
        }

        if (DateTimeOffset.TryParse(selector, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out DateTimeOffset when))
        {
            HistoryCapture? best = null;
            foreach (HistoryCapture c in all)
            {
                if (c.Time <= when && (best is null || c.Time >= best.Time))
                {
                    best = c;
                }
            }

            return best ?? throw new VmStateNotFoundException(VmStateObjectKind.Snapshot, selector, $"{Directory} has no capture at or before {when:yyyy-MM-ddTHH:mm:ss.fff}Z; {range}");
        }

        throw new VmStateNotFoundException(VmStateObjectKind.Snapshot, selector, $"\"{selector}\" is neither a capture number (1, -1 for the latest) nor a time (2026-11-29T10:05:00); {range}");
    }

    /// <summary>
    /// Opens <c>STORE@SELECTOR</c> as a machine that owns the store (disposing the machine closes it).
    /// </summary>
    public static MachineState OpenMachine(string directory, string selector, IReadOnlyList<string>? mainRam = null, ReaderLimits? limits = null)
    {
        HistoryStore store = Open(directory);
        try
        {
            return store.OpenCapture(store.Find(selector), mainRam, limits, ownsStore: true);
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The machine as it was at <paramref name="capture"/>: vCPUs and devices from the capture's device state, memory
    /// read page by page from the packs. The store must stay open while the machine is used.
    /// </summary>
    public MachineState OpenCapture(HistoryCapture capture, IReadOnlyList<string>? mainRam = null, ReaderLimits? limits = null) =>
        OpenCapture(capture, mainRam, limits, ownsStore: false);

    private MachineState OpenCapture(HistoryCapture capture, IReadOnlyList<string>? mainRam, ReaderLimits? limits, bool ownsStore)
    {
        ArgumentNullException.ThrowIfNull(capture);
        CaptureFile file = ReadCaptureFile(capture, limits);
        MigrationStream stream = ParseFrame(file, capture, limits);
        try
        {
            for (int b = 0; b < stream.RamBlocks.Count; b++)
            {
                RamBlock block = stream.RamBlocks[b];
                PageRunMap map = file.Maps[b];
                for (int i = 0; i < map.RunCount; i++)
                {
                    PageRun run = map.Run(i);
                    if (run.Value >= 0)
                    {
                        // A content id as a "stream offset" into the pages of the store (PageSource), never 0.
                        for (long k = 0; k < run.Count; k++)
                        {
                            block.SetData(run.Start + k, (run.Entry(k) + 1) * PageSize);
                        }
                    }
                    else if (PageMap.IsFill(run.Value, out byte fill))
                    {
                        block.SetFillRun(run.Start, run.Count, fill, 0, 9);
                    }
                }
            }

            var warnings = new List<string>(stream.Warnings.Where(w => !w.Contains("no END chunk", StringComparison.Ordinal)));
            IReadOnlyList<RamBlockInfo> mapped = X86MachineLayout.Map(stream.MachineType, stream.RamBlocks, stream.Devices, warnings, mainRam);
            var memory = new MigrationRamMemory(new PageSource(this, capture), stream.RamBlocks, mapped, PageSize);
            var cpus = X86CpuSectionDecoder.Decode(stream.Devices);
            WellKnownDevices.Annotate(stream.Devices);
            var origin = new HistoryCaptureOrigin(Path.Combine(Directory, CaptureFile.Name(capture.Number)), $"history store {Directory}, capture {capture.Number} of {capture.Time:yyyy-MM-ddTHH:mm:ss}Z", Directory, capture);
            return new MachineState(origin, stream.MachineType, memory, cpus, stream.Devices, mapped, warnings, ownsStore ? this : null);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes <paramref name="capture"/> as a migration stream QEMU can resume (<c>-incoming</c>): the capture's
    /// device state as it came, with one record per page the original stream sent (PAGE with the data, or ZERO with
    /// the fill byte) inserted before the last end-of-section record of RAM.
    /// </summary>
    public void Export(HistoryCapture capture, Stream output, IProgress<double>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(capture);
        ArgumentNullException.ThrowIfNull(output);
        CaptureFile file = ReadCaptureFile(capture, null);
        long eos;
        using (MigrationStream stream = ParseFrame(file, capture, null))
        {
            eos = stream.LastRamEosOffset;
        }

        if (eos < 0)
        {
            throw new VmStateFormatException(0, $"{CaptureFilePath(capture)}: device state", "the stream has no end-of-section record in its RAM section");
        }

        output.Write(file.Frame, 0, (int)eos);
        byte[] page = new byte[PageSize];
        Span<byte> word = stackalloc byte[8];
        long total = 0;
        foreach (PageRunMap m in file.Maps)
        {
            total += m.Pages;
        }

        long done = 0;
        for (int b = 0; b < file.Blocks.Count; b++)
        {
            bool named = false;
            PageRunMap map = file.Maps[b];
            byte[] name = System.Text.Encoding.UTF8.GetBytes(file.Blocks[b].Name);
            for (int i = 0; i < map.RunCount; i++)
            {
                PageRun run = map.Run(i);
                if (run.Value == PageMap.NotSent)
                {
                    done += run.Count;
                    continue;
                }

                for (long k = 0; k < run.Count; k++)
                {
                    long p = run.Start + k;
                    long e = run.Entry(k);

                    // QEMU 7.2 migration/ram.c save_page_header: the address word (offset | flags), then the block's
                    // idstr unless RAM_SAVE_FLAG_CONTINUE says it is the block of the previous record.
                    bool isFill = PageMap.IsFill(e, out byte fill);
                    ulong flags = (isFill ? 0x02UL : 0x08UL) | (named ? 0x20UL : 0);
                    BinaryPrimitives.WriteUInt64BigEndian(word, ((ulong)p * (ulong)PageSize) | flags);
                    output.Write(word);
                    if (!named)
                    {
                        output.WriteByte((byte)name.Length);
                        output.Write(name);
                        named = true;
                    }

                    if (isFill)
                    {
                        output.WriteByte(fill);
                    }
                    else
                    {
                        ReadPage(e, page);
                        output.Write(page);
                    }

                    if ((++done & 0xFFFF) == 0)
                    {
                        progress?.Report((double)done / total);
                    }
                }
            }
        }

        output.Write(file.Frame, (int)eos, file.Frame.Length - (int)eos);
        progress?.Report(1.0);
    }

    /// <summary>
    /// Checks the whole store: the manifest, every page index record against the packs, every page's hash against its
    /// decompressed content, every capture file's length and hash, its page references and its device state. Damage
    /// is collected, not thrown: an empty <see cref="HistoryVerifyResult.Problems"/> means the store is sound.
    /// </summary>
    public HistoryVerifyResult Verify(IProgress<double>? progress = null)
    {
        var problems = new List<string>();
        string indexPath = Path.Combine(Directory, PageIndex.FileName);
        for (int i = 0; i < _manifest.PackLengths.Count; i++)
        {
            string path = Path.Combine(Directory, PackFile.Name(i));
            try
            {
                SafeFileHandle h = Pack(i);
                byte[] header = new byte[PackFile.HeaderSize];
                RandomAccess.Read(h, header, 0);
                PackFile.CheckHeader(header, path);
                long have = RandomAccess.GetLength(h);
                if (have < _manifest.PackLengths[i])
                {
                    problems.Add($"{path}: {have} bytes, but the manifest commits {_manifest.PackLengths[i]}");
                }
            }
            catch (Exception e) when (e is VmStateException or IOException)
            {
                problems.Add(e.Message);
            }
        }

        long pagesChecked = 0;
        byte[] record = new byte[PageIndex.RecordSize];
        byte[]? frame = null;
        (int Pack, long Offset) frameKey = (-1, -1);
        string? frameError = null;
        for (long id = 0; id < _manifest.PageCount; id++)
        {
            try
            {
                RandomAccess.Read(_index, record, PageIndex.HeaderSize + (id * PageIndex.RecordSize));
                PageLocation loc = PageIndex.Read(record, id, _manifest, indexPath);
                if ((loc.Pack, loc.FrameOffset) != frameKey)
                {
                    frameKey = (loc.Pack, loc.FrameOffset);
                    frameError = null;
                    try
                    {
                        frame = DecompressFrame(loc);
                    }
                    catch (VmStateFormatException e)
                    {
                        frameError = e.Message;
                        problems.Add(e.Message);
                    }
                }

                if (frameError is null)
                {
                    ReadOnlySpan<byte> page = frame.AsSpan(loc.Slot * PageSize, PageSize);
                    UInt128 hash = XxHash128.HashToUInt128(page, (long)_manifest.Seed);
                    if (hash != loc.Hash)
                    {
                        problems.Add($"{Path.Combine(Directory, PackFile.Name(loc.Pack))}: page {id} (frame at offset {loc.FrameOffset}, slot {loc.Slot}) has hash {hash:x32}, the index {loc.Hash:x32}");
                    }
                    else
                    {
                        pagesChecked++;
                    }
                }
            }
            catch (Exception e) when (e is VmStateException or IOException)
            {
                problems.Add(e.Message);
            }

            if ((id & 0xFFFF) == 0)
            {
                progress?.Report(0.8 * id / Math.Max(1, _manifest.PageCount));
            }
        }

        int capturesChecked = 0;
        foreach (HistoryCapture c in _manifest.Captures)
        {
            try
            {
                CaptureFile file = ReadCaptureFile(c, null);
                ParseFrame(file, c, null).Dispose();
                VerifyIndex(c, problems);
                capturesChecked++;
            }
            catch (Exception e) when (e is VmStateException or IOException)
            {
                problems.Add(e.Message);
            }
        }

        progress?.Report(1.0);
        return new HistoryVerifyResult(_manifest.Captures.Count, capturesChecked, _manifest.PageCount, pagesChecked, problems);
    }

    /// <summary>
    /// The index of <paramref name="capture"/> (processes, modules, network devices, new kernel log lines, timing),
    /// read from its index file; computed from the capture's memory when the file is missing (a recorder killed
    /// between committing a capture and indexing it), without writing it (a reader never changes the store).
    /// </summary>
    /// <exception cref="VmStateFormatException">The index file is damaged.</exception>
    public HistoryCaptureIndex ReadIndex(HistoryCapture capture)
    {
        ArgumentNullException.ThrowIfNull(capture);
        return TryReadIndex(capture) ?? BuildIndex(capture);
    }

    /// <summary>The index of the capture before <paramref name="capture"/> from its file (null for the first capture, or when it has none).</summary>
    internal HistoryCaptureIndex? PreviousIndex(HistoryCapture capture)
    {
        HistoryCapture? previous = null;
        foreach (HistoryCapture c in Captures)
        {
            if (c.Number < capture.Number)
            {
                previous = c;
            }
        }

        return previous is null ? null : TryReadIndex(previous);
    }

    /// <summary>
    /// The capture's page maps by RAM block name, one entry per page (8 bytes a page): a content id, a fill entry or not
    /// sent (<see cref="PageMap"/>). For the readers that walk captures page by page (diff, find); the recorder keeps the
    /// runs (<see cref="CaptureFile.Maps"/>).
    /// </summary>
    internal IReadOnlyDictionary<string, long[]> PageMaps(HistoryCapture capture)
    {
        CaptureFile file = ReadCaptureFile(capture, null);
        var maps = new Dictionary<string, long[]>(StringComparer.Ordinal);
        for (int i = 0; i < file.Blocks.Count; i++)
        {
            maps[file.Blocks[i].Name] = file.Maps[i].ToArray();
        }

        return maps;
    }

    /// <summary>The capture's file (page maps and device state), checked against the manifest.</summary>
    internal CaptureFile ReadCapture(HistoryCapture capture) => ReadCaptureFile(capture, null);

    /// <summary>
    /// The index of <paramref name="capture"/> from the combined index file (<see cref="CaptureIndexLog"/>: one read
    /// for all captures), else from the capture's own index file; null when it has none (never computed here).
    /// </summary>
    /// <exception cref="VmStateFormatException">The index file is damaged.</exception>
    public HistoryCaptureIndex? TryReadIndex(HistoryCapture capture)
    {
        ArgumentNullException.ThrowIfNull(capture);
        (byte[] Data, Dictionary<int, (int Offset, int Length)> Records)? log = IndexLog();
        if (log is var (data, records) && records.TryGetValue(capture.Number, out (int Offset, int Length) at))
        {
            string where = $"{Path.Combine(Directory, CaptureIndexLog.FileName)} at {at.Offset} (capture {capture.Number})";
            HistoryCaptureIndex fromLog = CaptureIndexFile.Parse(data.AsSpan(at.Offset, at.Length), where);
            if (fromLog.Number != capture.Number)
            {
                throw new VmStateFormatException(at.Offset + 16, $"{where}: capture number", $"{fromLog.Number}, but the record is for capture {capture.Number}");
            }

            return fromLog;
        }

        string path = Path.Combine(Directory, CaptureIndexFile.Name(capture.Number));
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            return null;
        }

        return ParseIndexFile(bytes, path, capture);
    }

    /// <summary>
    /// Checks the index of <paramref name="capture"/>: its own file (when it has one) and its record in the combined
    /// index file (when the store has one) parse, and hold the same bytes. A capture without a record is not damage
    /// (a writer killed between the two writes, or a store from before the combined file): it is read from its file.
    /// </summary>
    private void VerifyIndex(HistoryCapture capture, List<string> problems)
    {
        string path = Path.Combine(Directory, CaptureIndexFile.Name(capture.Number));
        byte[]? own = null;
        try
        {
            own = File.ReadAllBytes(path);
            _ = ParseIndexFile(own, path, capture);
        }
        catch (FileNotFoundException)
        {
        }

        try
        {
            if (IndexLog() is var (data, records) && records.TryGetValue(capture.Number, out (int Offset, int Length) at))
            {
                _ = TryReadIndex(capture);
                if (own is not null && !own.AsSpan().SequenceEqual(data.AsSpan(at.Offset, at.Length)))
                {
                    problems.Add($"{Path.Combine(Directory, CaptureIndexLog.FileName)}: the record of capture {capture.Number} at offset {at.Offset} differs from {path}");
                }
            }
        }
        catch (VmStateFormatException e)
        {
            problems.Add(e.Message);
        }
    }

    private static HistoryCaptureIndex ParseIndexFile(byte[] bytes, string path, HistoryCapture capture)
    {
        HistoryCaptureIndex index = CaptureIndexFile.Parse(bytes, path);
        if (index.Number != capture.Number)
        {
            throw new VmStateFormatException(16, $"{path}: capture number", $"{index.Number}, but the file is named for capture {capture.Number}");
        }

        return index;
    }

    /// <summary>
    /// The combined index file (<see cref="CaptureIndexLog"/>), read whole on first use and kept: null when the store
    /// has none (written before it existed). Records past the committed captures are never looked up.
    /// </summary>
    private (byte[] Data, Dictionary<int, (int Offset, int Length)> Records)? IndexLog()
    {
        lock (_gate)
        {
            if (!_indexLogRead)
            {
                string path = Path.Combine(Directory, CaptureIndexLog.FileName);
                try
                {
                    byte[] data = File.ReadAllBytes(path);
                    _indexLog = (data, CaptureIndexLog.Scan(data, path, out _));
                }
                catch (FileNotFoundException)
                {
                    _indexLog = null;
                }

                _indexLogRead = true;
            }

            return _indexLog;
        }
    }

    private HistoryCaptureIndex BuildIndex(HistoryCapture capture)
    {
        using MachineState machine = OpenCapture(capture);
        return CaptureIndexBuilder.Build(capture.Number, machine, PreviousIndex(capture), null, null);
    }

    /// <summary>
    /// What changed from capture <paramref name="from"/> to <paramref name="to"/>: processes started and exited,
    /// modules loaded and unloaded, network devices, new kernel log lines (all from the captures' indexes), changed
    /// pages (from the page maps) and, with <paramref name="processPages"/>, the changed pages per process (its page
    /// tables walked in <paramref name="to"/>) and of the kernel (the rest).
    /// </summary>
    public HistoryDiff Diff(HistoryCapture from, HistoryCapture to, bool processPages = true)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        return HistoryDiffer.Diff(this, from, to, processPages);
    }

    /// <summary>Closes the store's files.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        lock (_gate)
        {
            _index.Dispose();
            foreach (SafeFileHandle? h in _packs)
            {
                h?.Dispose();
            }

            _decompressor.Dispose();
        }
    }

    /// <summary>Reads content page <paramref name="id"/> into <paramref name="destination"/> (one page), checking its hash.</summary>
    internal void ReadPage(long id, Span<byte> destination)
    {
        string indexPath = Path.Combine(Directory, PageIndex.FileName);
        if (id < 0 || id >= _manifest.PageCount)
        {
            throw new VmStateFormatException(0, $"{indexPath}: page id", $"{id}, but the store has {_manifest.PageCount} pages");
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            Span<byte> record = stackalloc byte[PageIndex.RecordSize];
            long at = PageIndex.HeaderSize + (id * PageIndex.RecordSize);
            if (RandomAccess.Read(_index, record, at) != record.Length)
            {
                throw new VmStateFormatException(at, $"{indexPath}: page {id} record", "the file ends inside the record (it was truncated after the store was opened)");
            }

            PageLocation loc = PageIndex.Read(record, id, _manifest, indexPath);
            byte[] frame;
            if (_frames.TryGetValue((loc.Pack, loc.FrameOffset), out var node))
            {
                _lru.Remove(node);
                _lru.AddFirst(node);
                frame = node.Value.Pages;
            }
            else
            {
                frame = DecompressFrame(loc);
                if (_lru.Count >= CachedFrames)
                {
                    var last = _lru.Last!;
                    _lru.RemoveLast();
                    _frames.Remove((last.Value.Pack, last.Value.Offset));
                }

                _frames[(loc.Pack, loc.FrameOffset)] = _lru.AddFirst((loc.Pack, loc.FrameOffset, frame));
            }

            ReadOnlySpan<byte> page = frame.AsSpan(loc.Slot * PageSize, PageSize);
            UInt128 hash = XxHash128.HashToUInt128(page, (long)_manifest.Seed);
            if (hash != loc.Hash)
            {
                throw new VmStateFormatException(loc.FrameOffset, $"{Path.Combine(Directory, PackFile.Name(loc.Pack))}: page {id} (slot {loc.Slot} of the frame)", $"content hash {hash:x32} does not match the index's {loc.Hash:x32}: the pack is damaged");
            }

            page.CopyTo(destination);
        }
    }

    private byte[] DecompressFrame(PageLocation loc)
    {
        string path = Path.Combine(Directory, PackFile.Name(loc.Pack));
        byte[] packed = new byte[loc.FrameLength];
        int n = RandomAccess.Read(Pack(loc.Pack), packed, loc.FrameOffset);
        if (n != packed.Length)
        {
            throw new VmStateFormatException(loc.FrameOffset, $"{path}: frame", $"{loc.FrameLength} bytes expected, the file ends after {n}");
        }

        byte[] pages = new byte[loc.FramePages * PageSize];
        try
        {
            int got;
            lock (_decompressor)
            {
                got = _decompressor.Unwrap(packed, pages);
            }

            if (got != pages.Length)
            {
                throw new VmStateFormatException(loc.FrameOffset, $"{path}: frame", $"decompresses to {got} bytes, {pages.Length} ({loc.FramePages} pages) expected");
            }
        }
        catch (ZstdException e)
        {
            throw new VmStateFormatException(loc.FrameOffset, $"{path}: frame", $"not a valid zstd frame of {loc.FramePages} pages: {e.Message}");
        }

        return pages;
    }

    private SafeFileHandle Pack(int pack)
    {
        lock (_packs)
        {
            return _packs[pack] ??= File.OpenHandle(Path.Combine(Directory, PackFile.Name(pack)), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        }
    }

    private string CaptureFilePath(HistoryCapture c) => Path.Combine(Directory, CaptureFile.Name(c.Number));

    private CaptureFile ReadCaptureFile(HistoryCapture capture, ReaderLimits? limits)
    {
        string path = CaptureFilePath(capture);
        long length = new FileInfo(path).Length;
        if (length != capture.FileLength)
        {
            throw new VmStateFormatException(length, $"{path}: length", $"{length} bytes, the manifest says {capture.FileLength}");
        }

        byte[] bytes = File.ReadAllBytes(path);
        UInt128 hash = XxHash128.HashToUInt128(bytes);
        if (hash != capture.FileHash)
        {
            throw new VmStateFormatException(0, $"{path}: content", $"XxHash128 {hash:x32}, the manifest has {capture.FileHash:x32}: the file is damaged or was replaced");
        }

        CaptureFile file = CaptureFile.Parse(bytes, path, _manifest.PageCount, limits);
        if (file.PageSize != PageSize)
        {
            throw new VmStateFormatException(8, $"{path}: page size", $"{file.PageSize}, the store's is {PageSize}");
        }

        return file;
    }

    private MigrationStream ParseFrame(CaptureFile file, HistoryCapture capture, ReaderLimits? limits)
    {
        string path = CaptureFilePath(capture);
        MigrationStream stream;
        try
        {
            stream = MigrationStreamReader.Read(new MemorySource(file.Frame, $"{path} (device state)"), limits, ownsSource: true);
        }
        catch (VmStateFormatException e)
        {
            throw new VmStateFormatException(e.Offset, $"{path}: device state, {e.Structure}", e.Problem, e);
        }

        bool same = stream.RamBlocks.Count == file.Blocks.Count && stream.PageSize == file.PageSize;
        for (int i = 0; same && i < file.Blocks.Count; i++)
        {
            same = stream.RamBlocks[i].Name == file.Blocks[i].Name && stream.RamBlocks[i].Length == file.Blocks[i].Length;
        }

        if (!same)
        {
            stream.Dispose();
            throw new VmStateFormatException(0, $"{path}: device state", "its RAM block list differs from the capture's page maps");
        }

        return stream;
    }

    /// <summary>The store's pages as a source: offset (id + 1) × page size is content page id (see <see cref="OpenCapture(HistoryCapture, IReadOnlyList{string}?, ReaderLimits?)"/>).</summary>
    private sealed class PageSource(HistoryStore store, HistoryCapture capture) : IRandomAccessSource
    {
        public long Length => (store._manifest.PageCount + 1) * store.PageSize;

        public string Name => $"{store.Directory}@{capture.Number}";

        public int Read(long offset, Span<byte> destination)
        {
            int size = store.PageSize;
            int done = 0;
            Span<byte> page = size <= 4096 ? stackalloc byte[size] : new byte[size];
            while (done < destination.Length && offset + done < Length)
            {
                long o = offset + done;
                long id = (o / size) - 1;
                int inPage = (int)(o % size);
                int n = Math.Min(size - inPage, destination.Length - done);
                store.ReadPage(id, page);
                page.Slice(inPage, n).CopyTo(destination.Slice(done, n));
                done += n;
            }

            return done;
        }

        public void Dispose()
        {
        }
    }
}
