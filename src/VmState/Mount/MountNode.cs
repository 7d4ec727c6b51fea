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

/// <summary>A directory whose entries are made when it is first listed or looked into, then kept.</summary>
public sealed class MountDirectory : MountNode
{
    private readonly Func<IEnumerable<MountNode>> _children;
    private readonly Lock _gate = new();
    private Dictionary<string, MountNode>? _byName;
    private MountNode[]? _ordered;

    /// <summary>A directory named <paramref name="name"/> whose entries <paramref name="children"/> makes.</summary>
    public MountDirectory(string name, Func<IEnumerable<MountNode>> children)
        : base(name) => _children = children ?? throw new ArgumentNullException(nameof(children));

    /// <summary>A directory with these entries.</summary>
    public MountDirectory(string name, params MountNode[] children)
        : this(name, () => children)
    {
    }

    /// <summary>The entries, in the order they were made (names are unique: a later duplicate is dropped).</summary>
    public IReadOnlyList<MountNode> Children
    {
        get
        {
            Load();
            return _ordered!;
        }
    }

    /// <summary>The entry named <paramref name="name"/>, or null.</summary>
    public MountNode? Find(string name)
    {
        Load();
        return _byName!.GetValueOrDefault(name);
    }

    private void Load()
    {
        if (_ordered is not null)
        {
            return;
        }

        lock (_gate)
        {
            if (_ordered is not null)
            {
                return;
            }

            var byName = new Dictionary<string, MountNode>(StringComparer.Ordinal);
            var ordered = new List<MountNode>();
            foreach (MountNode child in _children())
            {
                if (byName.TryAdd(child.Name, child))
                {
                    ordered.Add(child);
                }
            }

            _byName = byName;
            _ordered = [.. ordered];
        }
    }
}

/// <summary>A read-only file.</summary>
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
    /// extent, such as a process's virtual memory (size 0, as /proc/PID/mem), read at any offset.
    /// </summary>
    public virtual bool DirectIo => false;

    /// <summary>Reads at <paramref name="offset"/>; the count of bytes read (0 at the end).</summary>
    /// <exception cref="IOException">Nothing can be read at <paramref name="offset"/> (an unmapped address: EIO).</exception>
    public abstract int Read(long offset, Span<byte> destination);
}

/// <summary>A file whose bytes are made on first use (a text or JSON rendering), then kept.</summary>
public sealed class MountContentFile : MountFile
{
    private readonly Lazy<byte[]> _content;

    /// <summary>A file named <paramref name="name"/> whose bytes <paramref name="content"/> makes.</summary>
    public MountContentFile(string name, Func<byte[]> content)
        : base(name) => _content = new Lazy<byte[]>(content ?? throw new ArgumentNullException(nameof(content)), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <inheritdoc />
    public override long Size => _content.Value.Length;

    /// <inheritdoc />
    public override int Read(long offset, Span<byte> destination)
    {
        byte[] c = _content.Value;
        if (offset >= c.Length)
        {
            return 0;
        }

        int n = (int)Math.Min(destination.Length, c.Length - offset);
        c.AsSpan((int)offset, n).CopyTo(destination);
        return n;
    }
}

/// <summary>A file backed by a read function over a fixed size (guest-physical memory, a process's memory).</summary>
public sealed class MountRangeFile : MountFile
{
    private readonly Func<long, Span<byte>, int> _read;

    /// <summary>A file of <paramref name="size"/> bytes read by <paramref name="read"/>.</summary>
    public MountRangeFile(string name, long size, Func<long, Span<byte>, int> read, bool directIo = false)
        : base(name)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        Size = size;
        DirectIo = directIo;
        _read = read ?? throw new ArgumentNullException(nameof(read));
    }

    /// <inheritdoc />
    public override long Size { get; }

    /// <inheritdoc />
    public override bool DirectIo { get; }

    /// <inheritdoc />
    public override int Read(long offset, Span<byte> destination) => _read(offset, destination);
}
