using System.IO.MemoryMappedFiles;

namespace VmState.IO;

/// <summary>
/// A file mapped read-only into our address space: reads are memory copies, no system call. The raw pointer is
/// confined to this type. Pages touched stay resident (they count in RSS), so bulk one-pass jobs such as
/// <c>extract</c> use <see cref="FileSource"/> instead; random-access introspection uses this.
/// </summary>
public sealed unsafe class MappedFileSource : IRandomAccessSource
{
    private readonly MemoryMappedFile? _file;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _pointer;

    /// <summary>Maps <paramref name="path"/> read-only.</summary>
    public MappedFileSource(string path)
    {
        Name = path;
        Length = new FileInfo(path).Length;
        if (Length == 0)
        {
            return;
        }

        _file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _file.CreateViewAccessor(0, Length, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _pointer = p + _view.PointerOffset;
    }

    /// <inheritdoc />
    public long Length { get; }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public int Read(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset >= Length)
        {
            return 0;
        }

        int n = (int)Math.Min(destination.Length, Length - offset);
        new ReadOnlySpan<byte>(_pointer + offset, n).CopyTo(destination);
        return n;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }

        _file?.Dispose();
    }
}
