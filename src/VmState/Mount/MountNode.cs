namespace VmState.Mount;

/// <summary>
/// A node of a mounted view: a directory or a file. Nodes are built lazily (a directory lists its children on first
/// use) and answer reads without knowing about FUSE, so a tree can be tested without mounting it.
/// </summary>
public abstract class MountNode
{
    private protected MountNode(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('/', StringComparison.Ordinal) || name is "." or "..")
        {
            throw new ArgumentException($"'{name}' is not a file name", nameof(name));
        }

        Name = name;
    }

    /// <summary>The node's name in its directory.</summary>
    public string Name { get; }
}

/// <summary>
/// A directory whose entries are made when it is first listed or looked into, then kept; with a refresh interval
/// (a running VM's view), made again on the first use after the interval, keeping the entries whose names did not
/// change (a process directory stays the same object while the process lives).
/// </summary>
public sealed class MountDirectory : MountNode
{
    private readonly Func<IEnumerable<MountNode>> _children;
    private readonly Lock _gate = new();
    private readonly long _refreshTicks;
    private readonly TimeProvider _clock;
    private Listing? _listing;

    /// <summary>A directory named <paramref name="name"/> whose entries <paramref name="children"/> makes once.</summary>
    public MountDirectory(string name, Func<IEnumerable<MountNode>> children)
        : this(name, children, null)
    {
    }

    /// <summary>
    /// A directory named <paramref name="name"/> whose entries <paramref name="children"/> makes, again on the first
    /// use after <paramref name="refresh"/> (null: once), as <paramref name="clock"/> (default: the system's) measures it.
    /// </summary>
    public MountDirectory(string name, Func<IEnumerable<MountNode>> children, TimeSpan? refresh, TimeProvider? clock = null)
        : base(name)
    {
        _children = children ?? throw new ArgumentNullException(nameof(children));
        _clock = clock ?? TimeProvider.System;
        _refreshTicks = RefreshTicks(refresh, _clock);
    }

    /// <summary>An interval in <paramref name="clock"/>'s timestamp units (0: no refresh).</summary>
    internal static long RefreshTicks(TimeSpan? refresh, TimeProvider clock)
    {
        if (refresh is not TimeSpan r)
        {
            return 0;
        }

        ArgumentOutOfRangeException.ThrowIfNegative(r.Ticks, nameof(refresh));
        return Math.Max(1, (long)(r.TotalSeconds * clock.TimestampFrequency));
    }

    /// <summary>A directory with these entries.</summary>
    public MountDirectory(string name, params MountNode[] children)
        : this(name, () => children)
    {
    }

    /// <summary>Whether the entries are made again after an interval (a running VM's view).</summary>
    public bool Refreshes => _refreshTicks > 0;

    /// <summary>The entries, in the order they were made (names are unique: a later duplicate is dropped).</summary>
    public IReadOnlyList<MountNode> Children => Load().Ordered;

    /// <summary>The entry named <paramref name="name"/>, or null.</summary>
    public MountNode? Find(string name) => Load().ByName.GetValueOrDefault(name);

    private Listing Load()
    {
        Listing? current = Volatile.Read(ref _listing);
        if (current is not null && (_refreshTicks == 0 || _clock.GetTimestamp() - current.MadeAt < _refreshTicks))
        {
            return current;
        }

        lock (_gate)
        {
            current = _listing;
            if (current is not null && (_refreshTicks == 0 || _clock.GetTimestamp() - current.MadeAt < _refreshTicks))
            {
                return current;
            }

            var byName = new Dictionary<string, MountNode>(StringComparer.Ordinal);
            var ordered = new List<MountNode>();
            foreach (MountNode made in _children())
            {
                // An entry listed before under the same name is kept (its own caches, open files' identity).
                MountNode child = current?.ByName.GetValueOrDefault(made.Name) is MountNode old && old.GetType() == made.GetType() ? old : made;
                if (byName.TryAdd(child.Name, child))
                {
                    ordered.Add(child);
                }
            }

            var listing = new Listing(byName, [.. ordered], _clock.GetTimestamp());
            Volatile.Write(ref _listing, listing);
            return listing;
        }
    }

    private sealed record Listing(Dictionary<string, MountNode> ByName, MountNode[] Ordered, long MadeAt);
}

/// <summary>A symbolic link (such as <c>history/latest</c>): its target, relative to the link's directory.</summary>
public sealed class MountLink : MountNode
{
    private readonly Func<string> _target;

    /// <summary>A link named <paramref name="name"/> to what <paramref name="target"/> gives (asked at every readlink).</summary>
    public MountLink(string name, Func<string> target)
        : base(name) => _target = target ?? throw new ArgumentNullException(nameof(target));

    /// <summary>The link's target.</summary>
    public string Target => _target();
}

/// <summary>A file: read at an offset, and, for the few that take writes (guest memory with <c>--rw</c>), written.</summary>
public abstract class MountFile : MountNode
{
    private protected MountFile(string name)
        : base(name)
    {
    }

    /// <summary>The size <c>stat</c> reports.</summary>
    public abstract long Size { get; }

    /// <summary>
    /// Whether reads bypass the kernel's page cache (FUSE <c>direct_io</c>): for files whose size is not their content's
    /// extent, such as a process's virtual memory (size 0, as /proc/PID/mem), read at any offset, and for a running
    /// VM's renderings (size 0 until read, as /proc's files).
    /// </summary>
    public virtual bool DirectIo => false;

    /// <summary>
    /// Whether the kernel may keep the file's cached pages from one open to the next (FUSE <c>keep_cache</c>): true for
    /// content that does not change (a snapshot); false for a running VM's memory, whose cache is dropped at every
    /// open.
    /// </summary>
    public virtual bool KeepCache => !DirectIo;

    /// <summary>Whether the file takes writes (<see cref="Write"/>).</summary>
    public virtual bool Writable => false;

    /// <summary>
    /// The file an open reads from until it is closed: the file itself, or (for a running VM's rendering) the content
    /// made for this open, so that every read of one open sees one moment.
    /// </summary>
    public virtual MountFile Open() => this;

    /// <summary>Reads at <paramref name="offset"/>; the count of bytes read (0 at the end).</summary>
    /// <exception cref="IOException">Nothing can be read at <paramref name="offset"/> (an unmapped address: EIO).</exception>
    public abstract int Read(long offset, Span<byte> destination);

    /// <summary>Writes at <paramref name="offset"/>; the count of bytes written (fewer at the end of what can be written).</summary>
    /// <exception cref="IOException">Nothing can be written at <paramref name="offset"/> (EIO).</exception>
    /// <exception cref="NotSupportedException">The file takes no writes.</exception>
    public virtual int Write(long offset, ReadOnlySpan<byte> source) => throw new NotSupportedException($"{Name} is read-only");
}

/// <summary>
/// A file whose bytes are made on first use (a text or JSON rendering), then kept; with a refresh interval (a running
/// VM's view), made again by the first open after the interval, each open reading the content it was given.
/// </summary>
public sealed class MountContentFile : MountFile
{
    private readonly Func<byte[]> _make;
    private readonly Lazy<byte[]>? _content;
    private readonly long _refreshTicks;
    private readonly TimeProvider _clock = TimeProvider.System;
    private readonly Lock _gate = new();
    private (byte[] Bytes, long MadeAt)? _latest;

    /// <summary>A file named <paramref name="name"/> whose bytes <paramref name="content"/> makes once.</summary>
    public MountContentFile(string name, Func<byte[]> content)
        : this(name, content, null)
    {
    }

    /// <summary>
    /// A file named <paramref name="name"/> whose bytes <paramref name="content"/> makes; with
    /// <paramref name="refresh"/>, again at the first open after that interval (then its size reads as 0 until it is
    /// read, and reads bypass the page cache, as /proc's files do); <paramref name="clock"/> (default: the system's)
    /// measures the interval.
    /// </summary>
    public MountContentFile(string name, Func<byte[]> content, TimeSpan? refresh, TimeProvider? clock = null)
        : base(name)
    {
        _make = content ?? throw new ArgumentNullException(nameof(content));
        _clock = clock ?? TimeProvider.System;
        _refreshTicks = MountDirectory.RefreshTicks(refresh, _clock);
        if (refresh is null)
        {
            _content = new Lazy<byte[]>(content, LazyThreadSafetyMode.ExecutionAndPublication);
        }
    }

    private MountContentFile(string name, byte[] bytes)
        : base(name)
    {
        _make = () => bytes;
        _content = new Lazy<byte[]>(bytes);
    }

    /// <inheritdoc />
    public override long Size => _content is not null ? _content.Value.Length : (_latest?.Bytes.Length ?? 0);

    /// <inheritdoc />
    public override bool DirectIo => _content is null;

    /// <inheritdoc />
    public override MountFile Open()
    {
        if (_content is not null)
        {
            return this;
        }

        lock (_gate)
        {
            long now = _clock.GetTimestamp();
            if (_latest is not (byte[] bytes, long madeAt) || now - madeAt >= _refreshTicks)
            {
                bytes = _make();
                _latest = (bytes, now);
            }

            return new MountContentFile(Name, bytes);
        }
    }

    /// <inheritdoc />
    public override int Read(long offset, Span<byte> destination)
    {
        byte[] c = _content?.Value ?? ((MountContentFile)Open())._content!.Value;
        if (offset >= c.Length)
        {
            return 0;
        }

        int n = (int)Math.Min(destination.Length, c.Length - offset);
        c.AsSpan((int)offset, n).CopyTo(destination);
        return n;
    }
}

/// <summary>
/// A file backed by a read function over a fixed size (guest-physical memory, a process's memory, a core streamed
/// from memory), and with a write function, writable.
/// </summary>
public sealed class MountRangeFile : MountFile
{
    private readonly Func<long, Span<byte>, int> _read;
    private readonly Func<long, ReadOnlySpan<byte>, int>? _write;
    private readonly bool _keepCache;

    /// <summary>A file of <paramref name="size"/> bytes read by <paramref name="read"/>.</summary>
    public MountRangeFile(string name, long size, Func<long, Span<byte>, int> read, bool directIo = false)
        : this(name, size, read, null, directIo, keepCache: !directIo)
    {
    }

    /// <summary>
    /// A file of <paramref name="size"/> bytes read by <paramref name="read"/> and, when <paramref name="write"/> is
    /// given, written by it; <paramref name="keepCache"/> false drops the kernel's cached pages at every open (memory
    /// that changes: a running VM).
    /// </summary>
    public MountRangeFile(string name, long size, Func<long, Span<byte>, int> read, Func<long, ReadOnlySpan<byte>, int>? write, bool directIo, bool keepCache)
        : base(name)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        Size = size;
        DirectIo = directIo;
        _keepCache = keepCache && !directIo;
        _read = read ?? throw new ArgumentNullException(nameof(read));
        _write = write;
    }

    /// <inheritdoc />
    public override long Size { get; }

    /// <inheritdoc />
    public override bool DirectIo { get; }

    /// <inheritdoc />
    public override bool KeepCache => _keepCache;

    /// <inheritdoc />
    public override bool Writable => _write is not null;

    /// <inheritdoc />
    public override int Read(long offset, Span<byte> destination) => _read(offset, destination);

    /// <inheritdoc />
    public override int Write(long offset, ReadOnlySpan<byte> source) =>
        _write is not null ? _write(offset, source) : throw new NotSupportedException($"{Name} is read-only");
}

/// <summary>
/// A file made when it is opened (a core laid out from the registers of that moment): once, at the first use, and
/// kept; or, with <c>eachOpen</c> (a running VM), at every open, each open reading its own (size 0 until then, direct
/// I/O).
/// </summary>
public sealed class MountOpenedFile : MountFile
{
    private readonly Func<MountFile> _make;
    private readonly Lazy<MountFile>? _once;
    private MountFile? _latest;

    /// <summary>A file named <paramref name="name"/> that <paramref name="make"/> makes, once or (with <paramref name="eachOpen"/>) at every open.</summary>
    public MountOpenedFile(string name, Func<MountFile> make, bool eachOpen)
        : base(name)
    {
        _make = make ?? throw new ArgumentNullException(nameof(make));
        _once = eachOpen ? null : new Lazy<MountFile>(make, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <inheritdoc />
    public override long Size => _once is not null ? _once.Value.Size : (Volatile.Read(ref _latest)?.Size ?? 0);

    /// <inheritdoc />
    public override bool DirectIo => _once is null || _once.Value.DirectIo;

    /// <inheritdoc />
    public override bool KeepCache => _once is not null && _once.Value.KeepCache;

    /// <inheritdoc />
    public override MountFile Open()
    {
        if (_once is not null)
        {
            return _once.Value;
        }

        MountFile made = _make();
        Volatile.Write(ref _latest, made);
        return made;
    }

    /// <inheritdoc />
    public override int Read(long offset, Span<byte> destination) => (_once?.Value ?? Open()).Read(offset, destination);
}
