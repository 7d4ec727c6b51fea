namespace VmState.IO;

/// <summary>An in-memory byte array as a source (tests, fuzzing, small inputs).</summary>
public sealed class MemorySource : IRandomAccessSource
{
    private readonly ReadOnlyMemory<byte> _data;

    /// <summary>Wraps <paramref name="data"/> without copying.</summary>
    public MemorySource(ReadOnlyMemory<byte> data, string name = "memory")
    {
        _data = data;
        Name = name;
    }

    /// <inheritdoc />
    public long Length => _data.Length;

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public int Read(long offset, Span<byte> destination)
    {
        if (offset >= _data.Length || offset < 0)
        {
            return 0;
        }

        int n = (int)Math.Min(destination.Length, _data.Length - offset);
        _data.Span.Slice((int)offset, n).CopyTo(destination);
        return n;
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }
}
