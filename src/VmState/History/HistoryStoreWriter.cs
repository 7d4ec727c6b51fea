using System.IO.Hashing;
using System.Security.Cryptography;
using VmState.Formats;
using VmState.Formats.Migration;
using VmState.IO;
using VmState.Memory;
using ZstdSharp;

namespace VmState.History;

/// <summary>
/// Appends captures to a history store (a directory): each capture's pages are hashed (XxHash128 seeded with the
/// store's random seed), stored once across the whole store, zstd-compressed in frames of
/// <see cref="HistoryManifest.DefaultPagesPerFrame"/> pages appended to pack files; the capture's page map and the
/// stream's other bytes go to a capture file; the manifest then names it. The stream is read once, front to back, so
/// a pipe or socket can feed it (<see cref="Append"/>). One writer at a time holds the store's lock.
/// </summary>
/// <remarks>
/// A capture is all or nothing: until the manifest is renamed into place, nothing the manifest names has changed
/// (packs and the page index only grow past their committed lengths, the capture file has a new name). An exception
/// (a malformed stream, a full disk, cancellation) truncates what was appended and deletes the new files; after a
/// SIGKILL, the next writer does the same when it opens the store. Readers never look past the committed lengths.
/// </remarks>
public sealed class HistoryStoreWriter : IDisposable
{
    private const string LockName = "lock";
    private readonly string _dir;
    private readonly FileStream _lock;
    private readonly PageHashTable _pages = new();
    private HistoryManifest _manifest;
    private Dictionary<string, PageRunMap> _previous = new(StringComparer.Ordinal);
    private HistoryCaptureIndex? _lastIndex;

    private HistoryStoreWriter(string dir, FileStream lockFile, HistoryManifest manifest)
    {
        _dir = dir;
        _lock = lockFile;
        _manifest = manifest;
    }

    /// <summary>The store directory.</summary>
    public string Directory => _dir;

    /// <summary>The committed captures, oldest first.</summary>
    public IReadOnlyList<HistoryCapture> Captures => _manifest.Captures;

    /// <summary>Unique pages in the store.</summary>
    public long UniquePages => _manifest.PageCount;

    /// <summary>
    /// Opens the store in <paramref name="directory"/> for appending, creating it (mode 0700) when it does not exist
    /// or is empty. Whatever an interrupted writer left past the committed state is removed.
    /// </summary>
    /// <exception cref="IOException">Another writer holds the store, or the files cannot be opened.</exception>
    /// <exception cref="VmStateFormatException">A store file is damaged (the file, offset and field are named).</exception>
    public static HistoryStoreWriter Open(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string dir = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(dir))
        {
            if (OperatingSystem.IsWindows())
            {
                System.IO.Directory.CreateDirectory(dir);
            }
            else
            {
                System.IO.Directory.CreateDirectory(dir, StoreFiles.DirectoryMode);
            }
        }

        string manifestPath = Path.Combine(dir, HistoryManifest.FileName);
        bool fresh = !File.Exists(manifestPath);
        if (fresh && System.IO.Directory.EnumerateFileSystemEntries(dir).Any(e => Path.GetFileName(e) != LockName))
        {
            throw new IOException($"{dir} is not empty and has no history store manifest; give an empty or new directory");
        }

        FileStream lockFile;
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.ReadWrite, Share = FileShare.None };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = StoreFiles.FileMode;
            }

            lockFile = new FileStream(Path.Combine(dir, LockName), options);
        }
        catch (IOException e)
        {
            throw new IOException($"{dir} is being written by another process ({e.Message})", e);
        }

        HistoryStoreWriter? writer = null;
        try
        {
            HistoryManifest manifest = fresh
                ? new HistoryManifest { Seed = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)) }
                : HistoryManifest.Parse(File.ReadAllBytes(manifestPath), manifestPath);
            writer = new HistoryStoreWriter(dir, lockFile, manifest);
            if (fresh)
            {
                if (!OperatingSystem.IsWindows())
                {
                    // A store is owner-only, also in a directory the user made beforehand.
                    File.SetUnixFileMode(dir, StoreFiles.DirectoryMode);
                }

                writer.InitFiles();
            }

            writer.Recover();
            writer.RepairIndexLog();
            writer.LoadState();
            return writer;
        }
        catch
        {
            writer?._pages.Dispose();
            lockFile.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads a migration stream from <paramref name="stream"/> front to back (it need not seek) and appends it as a new
    /// capture; returns the capture as the manifest now lists it.
    /// </summary>
    /// <param name="stream">The migration stream (from its "QEVM" header to its end).</param>
    /// <param name="source">Where it came from, shown by <c>history list</c>.</param>
    /// <param name="time">When the state was captured.</param>
    /// <param name="progress">Bytes of the stream read so far.</param>
    /// <param name="cancellationToken">Cancels the capture; the store stays as it was.</param>
    /// <exception cref="VmStateFormatException">The stream is malformed; nothing was added.</exception>
    public HistoryCapture Append(Stream stream, string source, DateTimeOffset time, IProgress<long>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(source);
        if (System.Text.Encoding.UTF8.GetByteCount(source) > HistoryManifest.MaxSourceBytes)
        {
            source = source[..1024];
        }

        using var session = new CaptureSession(this);
        HistoryCapture capture;
        try
        {
            capture = session.Run(progress is null ? stream : new ProgressStream(stream, progress), source, time, cancellationToken);
        }
        catch when (!session.Committed)
        {
            // Once the manifest is renamed into place the capture is in the store: nothing may be undone after that
            // (only the directory's fsync can still fail, and it is reported).
            session.Rollback();
            throw;
        }

        if (IndexOnAppend)
        {
            IndexCapture(capture);
        }

        return capture;
    }

    /// <summary>
    /// Appends the migration stream of the snapshot file <paramref name="path"/> (a stream, a <c>virsh save</c> file or
    /// a qcow2 image's internal snapshot: <paramref name="snapshot"/> by id or name, the newest when null).
    /// </summary>
    public HistoryCapture Import(string path, string? snapshot = null, IProgress<long>? progress = null, CancellationToken cancellationToken = default)
    {
        (IRandomAccessSource source, string description, DateTimeOffset? time) = Snapshots.SnapshotLoader.OpenStreamBytes(path, snapshot);
        using (source)
        {
            DateTimeOffset when = time ?? new DateTimeOffset(File.GetLastWriteTimeUtc(path), TimeSpan.Zero);
            return Append(new SourceStream(source), $"{Path.GetFullPath(path)} ({description})", when, progress, cancellationToken);
        }
    }

    /// <summary>
    /// Drops the captures <paramref name="keep"/> rejects and reclaims the pages only they referenced. The kept
    /// captures keep their numbers, times, page maps, device state and indexes (a kept capture after dropped ones
    /// also keeps the kernel log lines they first saw). The store is rewritten beside itself (a sibling directory
    /// <c>.NAME.prune-PID</c>: each unique page the kept captures use is copied once, never re-hashed per capture),
    /// then the two directories are exchanged in one step (renameat2 RENAME_EXCHANGE) and the old one deleted: at
    /// every moment the store's path holds the whole old store or the whole new one, whatever the point a crash or
    /// SIGKILL hits (a leftover sibling is removed by the next prune). Holds the store's lock throughout.
    /// </summary>
    /// <exception cref="ArgumentException">Every capture would be dropped.</exception>
    public static HistoryPruneResult Prune(string directory, Func<HistoryCapture, bool> keep, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(keep);
        string dir = Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar);
        string parent = Path.GetDirectoryName(dir)!;
        string name = Path.GetFileName(dir);
        foreach (string stale in System.IO.Directory.EnumerateDirectories(parent, $".{name}.prune-*"))
        {
            System.IO.Directory.Delete(stale, recursive: true);
        }

        using HistoryStoreWriter held = Open(dir);
        var kept = new List<HistoryCapture>();
        var dropped = new List<HistoryCapture>();
        foreach (HistoryCapture c in held.Captures)
        {
            (keep(c) ? kept : dropped).Add(c);
        }

        long bytesBefore = DirectoryBytes(dir);
        if (dropped.Count == 0)
        {
            return new HistoryPruneResult(kept, dropped, held.UniquePages, held.UniquePages, bytesBefore, bytesBefore);
        }

        if (kept.Count == 0)
        {
            throw new ArgumentException($"every capture of {dir} would be dropped; keep at least one (or delete the directory)");
        }

        string next = Path.Combine(parent, $".{name}.prune-{Environment.ProcessId}");
        long pagesAfter;
        try
        {
            using (HistoryStore old = HistoryStore.Open(dir))
            using (HistoryStoreWriter fresh = Open(next))
            {
                fresh.IndexOnAppend = false;
                var copied = new Dictionary<long, long>();
                HistoryCaptureIndex? previousKept = null;
                int at = 0;
                foreach (HistoryCapture c in kept)
                {
                    using (var session = new CaptureSession(fresh))
                    {
                        try
                        {
                            session.Copy(old, c, copied, cancellationToken);
                        }
                        catch when (!session.Committed)
                        {
                            session.Rollback();
                            throw;
                        }
                    }

                    // The log lines the dropped captures before this one saw first now belong to it.
                    var between = new List<HistoryCapture>();
                    while (at < old.Captures.Count && old.Captures[at].Number < c.Number)
                    {
                        between.Add(old.Captures[at++]);
                    }

                    at++;
                    HistoryCaptureIndex? index = old.TryReadIndex(c);
                    if (index is not null)
                    {
                        index = WithLinesOf(old, between, index, previousKept);
                        fresh.WriteIndex(c.Number, CaptureIndexFile.Serialize(index, old.PageSize), durable: false);
                    }

                    previousKept = index;
                }

                pagesAfter = fresh.UniquePages;
                StoreFiles.SyncDirectory(next);
            }

            cancellationToken.ThrowIfCancellationRequested();
            StoreFiles.Exchange(next, dir);
        }
        catch
        {
            if (System.IO.Directory.Exists(next))
            {
                System.IO.Directory.Delete(next, recursive: true);
            }

            throw;
        }

        StoreFiles.SyncDirectory(parent);
        System.IO.Directory.Delete(next, recursive: true);
        return new HistoryPruneResult(kept, dropped, held.UniquePages, pagesAfter, bytesBefore, DirectoryBytes(dir));
    }

    /// <summary><paramref name="index"/> with the new log lines of the dropped captures <paramref name="between"/> (those after <paramref name="previousKept"/>) put before its own.</summary>
    private static HistoryCaptureIndex WithLinesOf(HistoryStore old, List<HistoryCapture> between, HistoryCaptureIndex index, HistoryCaptureIndex? previousKept)
    {
        if (between.Count == 0 || index.KernelError is not null)
        {
            return index;
        }

        ulong after = previousKept is { KernelError: null } p && p.KernelTextAddress == index.KernelTextAddress && p.LogNext <= index.LogNext ? p.LogNext : 0;
        var lines = new List<HistoryLogLine>();
        ulong next = after;
        foreach (HistoryCapture c in between)
        {
            if (old.TryReadIndex(c) is not { KernelError: null } i || i.KernelTextAddress != index.KernelTextAddress)
            {
                continue;
            }

            foreach (HistoryLogLine l in i.NewLogLines)
            {
                if (l.Sequence >= next && l.Sequence < index.LogAfter)
                {
                    lines.Add(l);
                    next = l.Sequence + 1;
                }
            }
        }

        lines.AddRange(index.NewLogLines.Where(l => l.Sequence >= next));
        return index with { LogAfter = Math.Min(after, index.LogAfter), NewLogLines = lines };
    }

    private static long DirectoryBytes(string dir)
    {
        long total = 0;
        foreach (string f in System.IO.Directory.EnumerateFiles(dir))
        {
            total += new FileInfo(f).Length;
        }

        return total;
    }

    /// <summary>
    /// Whether <see cref="Append"/> computes the new capture's index (<see cref="IndexCapture"/>) before it returns
    /// (default true). A recorder turns it off to index a capture after QEMU has finished, with the capture's timing.
    /// </summary>
    public bool IndexOnAppend { get; set; } = true;

    /// <summary>
    /// Computes the index of committed capture <paramref name="capture"/> (processes, modules, network devices, new
    /// kernel log lines: <see cref="HistoryCaptureIndex"/>) from its stored state and writes it (atomically, replacing
    /// any index it had), with the guest pause and wall time of the capture when known.
    /// </summary>
    public HistoryCaptureIndex IndexCapture(HistoryCapture capture, TimeSpan? guestPause = null, TimeSpan? wall = null)
    {
        ArgumentNullException.ThrowIfNull(capture);
        using HistoryStore store = HistoryStore.Open(_dir);
        HistoryCapture committed = store.Captures.FirstOrDefault(c => c.Number == capture.Number)
            ?? throw new ArgumentException($"capture {capture.Number} is not in {_dir}", nameof(capture));
        // The recorder indexes each capture after the one before: that index is still here, not read again.
        int at = -1;
        for (int i = 0; i < store.Captures.Count; i++)
        {
            at = store.Captures[i].Number == committed.Number ? i : at;
        }

        HistoryCaptureIndex? previous = at > 0 && _lastIndex is { } last && last.Number == store.Captures[at - 1].Number
            ? last
            : store.PreviousIndex(committed);
        HistoryCaptureIndex index;
        using (Machine.MachineState machine = store.OpenCapture(committed))
        {
            index = CaptureIndexBuilder.Build(committed.Number, machine, previous, guestPause, wall);
        }

        WriteIndex(committed.Number, CaptureIndexFile.Serialize(index, _manifest.PageSize), durable: true);
        _lastIndex = index;
        return index;
    }

    /// <summary>
    /// Writes the index file of capture <paramref name="number"/> (replacing it atomically), then appends it to the
    /// combined index file (<see cref="CaptureIndexLog"/>); with <paramref name="durable"/> both are fsynced and so is
    /// the directory.
    /// </summary>
    private void WriteIndex(int number, byte[] bytes, bool durable)
    {
        if (durable)
        {
            StoreFiles.WriteAtomically(FilePath(CaptureIndexFile.Name(number)), bytes);
        }
        else
        {
            StoreFiles.Replace(FilePath(CaptureIndexFile.Name(number)), bytes);
        }

        using FileStream log = StoreFiles.OpenWrite(FilePath(CaptureIndexLog.FileName), create: false);
        log.Position = log.Length;
        log.Write(CaptureIndexLog.Record(number, bytes));
        log.Flush(flushToDisk: durable);
    }

    /// <summary>
    /// Makes the combined index file hold every committed capture's index file as its latest record: creates it for a
    /// store written before it existed (from the index files, atomically), cuts off a record a killed writer left
    /// unfinished, and appends the index files it lacks (a writer killed between writing an index file and its record).
    /// </summary>
    private void RepairIndexLog()
    {
        string path = FilePath(CaptureIndexLog.FileName);
        var missing = new List<byte[]>();
        Dictionary<int, (int Offset, int Length)> records = [];
        byte[] data = [];
        bool exists = File.Exists(path);
        if (exists)
        {
            data = File.ReadAllBytes(path);
            records = CaptureIndexLog.Scan(data, path, out int valid);
            if (valid < data.Length)
            {
                using FileStream f = StoreFiles.OpenWrite(path, create: false);
                f.SetLength(valid);
                f.Flush(flushToDisk: true);
            }
        }

        foreach (HistoryCapture c in _manifest.Captures)
        {
            byte[] own;
            try
            {
                own = File.ReadAllBytes(FilePath(CaptureIndexFile.Name(c.Number)));
            }
            catch (FileNotFoundException)
            {
                continue;
            }

            if (!records.TryGetValue(c.Number, out (int Offset, int Length) at) || !own.AsSpan().SequenceEqual(data.AsSpan(at.Offset, at.Length)))
            {
                missing.Add(CaptureIndexLog.Record(c.Number, own));
            }
        }

        if (!exists)
        {
            using var all = new MemoryStream();
            all.Write(CaptureIndexLog.Header());
            foreach (byte[] r in missing)
            {
                all.Write(r);
            }

            StoreFiles.WriteAtomically(path, all.GetBuffer().AsSpan(0, (int)all.Length));
        }
        else if (missing.Count > 0)
        {
            using FileStream f = StoreFiles.OpenWrite(path, create: false);
            f.Position = f.Length;
            foreach (byte[] r in missing)
            {
                f.Write(r);
            }

            f.Flush(flushToDisk: true);
        }
    }

    /// <summary>Releases the store's lock.</summary>
    public void Dispose()
    {
        _pages.Dispose();
        _lock.Dispose();
    }

    private string FilePath(string name) => Path.Combine(_dir, name);

    private void InitFiles()
    {
        using (FileStream f = StoreFiles.OpenWrite(FilePath(PageIndex.FileName), create: true))
        {
            f.SetLength(0);
            f.Write(PageIndex.Header());
            f.Flush(flushToDisk: true);
        }

        StoreFiles.WriteAtomically(FilePath(HistoryManifest.FileName), _manifest.Serialize());
    }

    /// <summary>Cuts every file back to what the manifest commits and removes files it does not name.</summary>
    private void Recover()
    {
        string index = FilePath(PageIndex.FileName);
        long indexLength = PageIndex.HeaderSize + (_manifest.PageCount * PageIndex.RecordSize);
        using (FileStream f = StoreFiles.OpenWrite(index, create: false))
        {
            byte[] h = new byte[PageIndex.HeaderSize];
            f.ReadExactly(h);
            PageIndex.CheckHeader(h, index);
            if (f.Length < indexLength)
            {
                throw new VmStateFormatException(f.Length, $"{index}: length", $"the manifest commits {_manifest.PageCount} records ({indexLength} bytes), the file has {f.Length} bytes");
            }

            if (f.Length > indexLength)
            {
                f.SetLength(indexLength);
                f.Flush(flushToDisk: true);
            }
        }

        var keep = new HashSet<string>(StringComparer.Ordinal) { HistoryManifest.FileName, PageIndex.FileName, CaptureIndexLog.FileName, LockName };
        for (int i = 0; i < _manifest.PackLengths.Count; i++)
        {
            string name = PackFile.Name(i);
            keep.Add(name);
            using FileStream f = StoreFiles.OpenWrite(FilePath(name), create: false);
            if (f.Length < _manifest.PackLengths[i])
            {
                throw new VmStateFormatException(f.Length, $"{FilePath(name)}: length", $"the manifest commits {_manifest.PackLengths[i]} bytes, the file has {f.Length}");
            }

            if (f.Length > _manifest.PackLengths[i])
            {
                f.SetLength(_manifest.PackLengths[i]);
                f.Flush(flushToDisk: true);
            }
        }

        foreach (HistoryCapture c in _manifest.Captures)
        {
            keep.Add(CaptureFile.Name(c.Number));
            keep.Add(CaptureIndexFile.Name(c.Number));
        }

        foreach (string entry in System.IO.Directory.EnumerateFiles(_dir))
        {
            string name = Path.GetFileName(entry);
            bool ours = name.StartsWith("pack-", StringComparison.Ordinal) || name.StartsWith("capture-", StringComparison.Ordinal)
                || name.StartsWith("index-", StringComparison.Ordinal)
                || (name.StartsWith('.') && name.EndsWith(".tmp", StringComparison.Ordinal));
            if (ours && !keep.Contains(name))
            {
                File.Delete(entry);
            }
        }
    }

    private void LoadState()
    {
        string index = FilePath(PageIndex.FileName);
        using (FileStream f = new(index, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 20))
        {
            f.Position = PageIndex.HeaderSize;
            byte[] record = new byte[PageIndex.RecordSize];
            for (long id = 0; id < _manifest.PageCount; id++)
            {
                f.ReadExactly(record);
                PageLocation loc = PageIndex.Read(record, id, _manifest, index);
                _pages.TryAdd(loc.Hash, id);
            }
        }

        if (_manifest.Captures.Count > 0)
        {
            HistoryCapture last = _manifest.Captures[^1];
            string path = FilePath(CaptureFile.Name(last.Number));
            CaptureFile file = CaptureFile.Parse(File.ReadAllBytes(path), path, _manifest.PageCount);
            for (int i = 0; i < file.Blocks.Count; i++)
            {
                _previous[file.Blocks[i].Name] = file.Maps[i];
            }
        }
    }

    /// <summary>One capture being appended: the observer the splitter feeds, and what to undo if it fails.</summary>
    private sealed class CaptureSession(HistoryStoreWriter writer) : IRamStreamObserver, IDisposable
    {
        private readonly HistoryManifest _before = writer._manifest;
        private readonly HistoryManifest _next = writer._manifest.Clone();
        private readonly List<UInt128> _added = [];
        private readonly byte[] _index = new byte[PageIndex.RecordSize];
        private readonly Compressor _compressor = new(3);
        private readonly List<UInt128> _frameHashes = [];
        private readonly List<PageRunMapBuilder> _maps = [];
        private PageRunMap[] _built = [];
        private IReadOnlyList<(string Name, ulong Length)> _blocks = [];
        private byte[] _frame = [];
        private byte[] _packed = [];
        private FileStream? _pack;
        private FileStream? _indexFile;
        private string? _captureTemp;
        private string? _captureFinal;
        private int _newPackFrom = -1;
        private long _bytesAdded;
        private int _pageSize;

        /// <summary>True once the new manifest is in place: the capture is part of the store.</summary>
        public bool Committed { get; private set; }

        public HistoryCapture Run(Stream stream, string source, DateTimeOffset time, CancellationToken cancel)
        {
            _indexFile = StoreFiles.OpenWrite(writer.FilePath(PageIndex.FileName), create: false);
            _indexFile.Position = PageIndex.HeaderSize + (_before.PageCount * PageIndex.RecordSize);
            MigrationStreamSplitter split = MigrationStreamSplitter.Split(stream, this, ReaderLimits.Default, cancel);
            FlushFrame();
            byte[] frame = split.Frame;
            CheckFrame(frame, split);
            cancel.ThrowIfCancellationRequested();
            int number = _before.Captures.Count == 0 ? 1 : _before.Captures[^1].Number + 1;
            return Commit(frame, split.StreamBytes, number, source, time, cancel);
        }

        /// <summary>
        /// Adds capture <paramref name="capture"/> of <paramref name="from"/> under its own number, its pages copied
        /// from there: a page already copied (<paramref name="copied"/>: old content id → new) is not read again.
        /// </summary>
        public HistoryCapture Copy(HistoryStore from, HistoryCapture capture, Dictionary<long, long> copied, CancellationToken cancel)
        {
            _indexFile = StoreFiles.OpenWrite(writer.FilePath(PageIndex.FileName), create: false);
            _indexFile.Position = PageIndex.HeaderSize + (_before.PageCount * PageIndex.RecordSize);
            CaptureFile old = from.ReadCapture(capture);
            BlockList(old.Blocks, old.PageSize);
            byte[] page = new byte[old.PageSize];
            for (int b = 0; b < old.Blocks.Count; b++)
            {
                PageRunMap map = old.Maps[b];
                PageRunMapBuilder into = _maps[b];
                for (int i = 0; i < map.RunCount; i++)
                {
                    PageRun run = map.Run(i);
                    if (run.Value < 0)
                    {
                        into.SetRun(run.Start, run.Count, run.Value, 0);
                        continue;
                    }

                    for (long k = 0; k < run.Count; k++)
                    {
                        long e = run.Entry(k);
                        long p = run.Start + k;
                        if (!copied.TryGetValue(e, out long id))
                        {
                            cancel.ThrowIfCancellationRequested();
                            from.ReadPage(e, page);
                            id = Store(page);
                            copied[e] = id;
                        }

                        into.Set(p, id);
                    }
                }
            }

            FlushFrame();
            return Commit(old.Frame, capture.StreamBytes, capture.Number, capture.Source, capture.Time, cancel);
        }

        private HistoryCapture Commit(byte[] frame, long streamBytes, int number, string source, DateTimeOffset time, CancellationToken cancel)
        {
            _pack?.Flush(flushToDisk: true);
            _indexFile!.Flush(flushToDisk: true);
            _bytesAdded += (_next.PageCount - _before.PageCount) * PageIndex.RecordSize;

            _built = new PageRunMap[_maps.Count];
            for (int b = 0; b < _maps.Count; b++)
            {
                _built[b] = _maps[b].Build();
            }

            _maps.Clear();
            var file = new CaptureFile(_pageSize, frame, _blocks, _built);
            byte[] bytes = file.Serialize();
            _captureFinal = writer.FilePath(CaptureFile.Name(number));
            _captureTemp = writer.FilePath($".{CaptureFile.Name(number)}.{Environment.ProcessId}.tmp");
            using (FileStream f = StoreFiles.NewFile(_captureTemp))
            {
                f.Write(bytes);
                f.Flush(flushToDisk: true);
            }

            File.Move(_captureTemp, _captureFinal, overwrite: true);
            _captureTemp = null;
            _bytesAdded += bytes.Length;

            long data = 0;
            long fills = 0;
            long changed = 0;
            for (int b = 0; b < _blocks.Count; b++)
            {
                PageRunMap map = _built[b];
                writer._previous.TryGetValue(_blocks[b].Name, out PageRunMap? prev);
                map.Count(out long d, out long f);
                data += d;
                fills += f;
                changed += map.CountChanged(prev);
            }

            var capture = new HistoryCapture(number, time.ToUniversalTime(), source, streamBytes, data, fills,
                _next.PageCount - _before.PageCount, changed, _bytesAdded)
            {
                FileLength = bytes.Length,
                FileHash = XxHash128.HashToUInt128(bytes),
            };
            _next.Captures.Add(capture);
            cancel.ThrowIfCancellationRequested();
            StoreFiles.Replace(writer.FilePath(HistoryManifest.FileName), _next.Serialize());

            // Committed: from here on nothing is undone.
            Committed = true;
            writer._manifest = _next;
            writer._previous = new Dictionary<string, PageRunMap>(StringComparer.Ordinal);
            for (int b = 0; b < _blocks.Count; b++)
            {
                writer._previous[_blocks[b].Name] = _built[b];
            }

            _added.Clear();
            _captureFinal = null;
            _newPackFrom = -1;
            StoreFiles.SyncDirectory(writer._dir);
            return capture;
        }

        /// <summary>Undoes everything this capture appended: the store is as it was before.</summary>
        public void Rollback()
        {
            foreach (UInt128 h in _added)
            {
                writer._pages.Remove(h);
            }

            _pack?.Dispose();
            _pack = null;
            _indexFile?.Dispose();
            _indexFile = null;
            using (FileStream f = StoreFiles.OpenWrite(writer.FilePath(PageIndex.FileName), create: false))
            {
                f.SetLength(PageIndex.HeaderSize + (_before.PageCount * PageIndex.RecordSize));
            }

            for (int i = 0; i < _before.PackLengths.Count; i++)
            {
                using FileStream f = StoreFiles.OpenWrite(writer.FilePath(PackFile.Name(i)), create: false);
                if (f.Length != _before.PackLengths[i])
                {
                    f.SetLength(_before.PackLengths[i]);
                }
            }

            if (_newPackFrom >= 0)
            {
                for (int i = _newPackFrom; i < _next.PackLengths.Count; i++)
                {
                    File.Delete(writer.FilePath(PackFile.Name(i)));
                }
            }

            if (_captureTemp is not null)
            {
                File.Delete(_captureTemp);
            }

            if (_captureFinal is not null)
            {
                File.Delete(_captureFinal);
            }
        }

        public void Dispose()
        {
            _compressor.Dispose();
            _pack?.Dispose();
            _indexFile?.Dispose();
        }

        public void BlockList(IReadOnlyList<(string Name, ulong Length)> blocks, int pageSize)
        {
            if (_before.Captures.Count > 0 && pageSize != _before.PageSize)
            {
                throw new VmStateFormatException(0, "ram section", $"page size {pageSize}, but the store holds pages of {_before.PageSize} bytes");
            }

            _next.PageSize = pageSize;
            _pageSize = pageSize;
            _blocks = [.. blocks];
            foreach ((string _, ulong length) in blocks)
            {
                _maps.Add(new PageRunMapBuilder((long)((length + (ulong)pageSize - 1) / (ulong)pageSize)));
            }

            _frame = new byte[_before.PagesPerFrame * pageSize];
        }

        public void Page(int block, ulong offset, ReadOnlyMemory<byte> data)
        {
            ReadOnlySpan<byte> page = data.Span;
            long index = (long)(offset / (ulong)_pageSize);
            _maps[block].Set(index, page[1..].ContainsAnyExcept(page[0]) ? Store(page) : PageMap.FillEntry(page[0]));
        }

        /// <summary>The content id of <paramref name="page"/> (not one byte repeated): the stored copy's, or a new one added to the frame being filled.</summary>
        private long Store(ReadOnlySpan<byte> page)
        {
            UInt128 hash = XxHash128.HashToUInt128(page, (long)_before.Seed);
            if (!writer._pages.TryGetValue(hash, out long id))
            {
                id = _next.PageCount++;
                writer._pages.TryAdd(hash, id);
                _added.Add(hash);
                page.CopyTo(_frame.AsSpan(_frameHashes.Count * _pageSize));
                _frameHashes.Add(hash);
                if (_frameHashes.Count == _before.PagesPerFrame)
                {
                    FlushFrame();
                }
            }

            return id;
        }

        public void Fill(int block, ulong offset, byte value, bool replaces) =>
            _maps[block].Set((long)(offset / (ulong)_pageSize), PageMap.FillEntry(value));

        public byte[] ExchangeBuffer(byte[] full) => full;

        private void FlushFrame()
        {
            int n = _frameHashes.Count;
            if (n == 0)
            {
                return;
            }

            int bound = Compressor.GetCompressBound(n * _pageSize);
            if (_packed.Length < bound)
            {
                _packed = new byte[bound];
            }

            int length = _compressor.Wrap(_frame.AsSpan(0, n * _pageSize), _packed);
            FileStream pack = PackFor(length);
            int packIndex = _next.PackLengths.Count - 1;
            long at = _next.PackLengths[packIndex];
            pack.Position = at;
            pack.Write(_packed, 0, length);
            _next.PackLengths[packIndex] = at + length;
            _bytesAdded += length;
            long first = _next.PageCount - n;
            for (int i = 0; i < n; i++)
            {
                PageIndex.Write(_index, new PageLocation(_frameHashes[i], packIndex, at, length, i, n));
                _indexFile!.Write(_index);
            }

            _frameHashes.Clear();
            _ = first;
        }

        /// <summary>The pack to append <paramref name="length"/> bytes to: the last one, or a new one when it is full.</summary>
        private FileStream PackFor(int length)
        {
            int last = _next.PackLengths.Count - 1;
            if (last >= 0 && _next.PackLengths[last] + length <= PackFile.MaxBytes)
            {
                _pack ??= StoreFiles.OpenWrite(writer.FilePath(PackFile.Name(last)), create: false);
                return _pack;
            }

            if (_next.PackLengths.Count >= HistoryManifest.MaxPacks)
            {
                throw new IOException($"the store has {HistoryManifest.MaxPacks} packs, the most it may have");
            }

            _pack?.Flush(flushToDisk: true);
            _pack?.Dispose();
            int index = _next.PackLengths.Count;
            if (_newPackFrom < 0)
            {
                _newPackFrom = index;
            }

            _pack = StoreFiles.OpenWrite(writer.FilePath(PackFile.Name(index)), create: true);
            _pack.SetLength(0);
            _pack.Write(PackFile.Header());
            _next.PackLengths.Add(PackFile.HeaderSize);
            _bytesAdded += PackFile.HeaderSize;
            return _pack;
        }

        /// <summary>
        /// The frame must be a stream the reader parses, with the same RAM blocks and no page record left in it (a
        /// page record after a device section would have been copied into it, not stored).
        /// </summary>
        private void CheckFrame(byte[] frame, MigrationStreamSplitter split)
        {
            if (split.Blocks.Count == 0)
            {
                throw new VmStateFormatException(split.StreamBytes, "ram section", "the stream has no RAM block list (MEM_SIZE record)");
            }

            using MigrationStream parsed = MigrationStreamReader.Read(new MemorySource(frame, "device state"), ReaderLimits.Default);
            if (parsed.PageSize != split.PageSize || parsed.RamBlocks.Count != split.Blocks.Count)
            {
                throw new VmStateFormatException(0, "device state", $"the stream's description gives page size {parsed.PageSize} and {parsed.RamBlocks.Count} RAM blocks; its RAM section was read with {split.PageSize} and {split.Blocks.Count}");
            }

            foreach (RamBlock b in parsed.RamBlocks)
            {
                if (b.DataPages != 0 || b.ZeroPages != 0)
                {
                    throw new VmStateFormatException(0, "device state", $"page records of block \"{b.Name}\" after the device sections (not a precopy stream)");
                }
            }
        }
    }

    /// <summary>Reports how far a stream has been read.</summary>
    private sealed class ProgressStream(Stream inner, IProgress<long> progress) : Stream
    {
        private long _read;
        private long _reported;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => _read; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = inner.Read(buffer, offset, count);
            _read += n;
            if (_read - _reported >= 16 << 20 || n == 0)
            {
                _reported = _read;
                progress.Report(_read);
            }

            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
