namespace VmState.IO;

/// <summary>A window [start, start+length) of another source, seen as a source of its own (offsets start at 0).</summary>
public sealed class WindowSource : IRandomAccessSource
{
    private readonly IRandomAccessSource _inner;
    private readonly long _start;
    private readonly bool _ownsInner;

    /// <summary>Creates the window; <paramref name="ownsInner"/> says whether disposing the window disposes the inner source.</summary>
    public WindowSource(IRandomAccessSource inner, long start, long length, bool ownsInner)
    {
        if (start < 0 || length < 0 || start > inner.Length || length > inner.Length - start)
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"window [{start}, +{length}) is outside {inner.Name} ({inner.Length} bytes)");
        }

        _inner = inner;
        _start = start;
        Length = length;
        _ownsInner = ownsInner;
    }

    /// <inheritdoc />
    public long Length { get; }

    /// <inheritdoc />
    public string Name => _inner.Name;

    /// <summary>Offset of the window in the inner source.</summary>
    public long Start => _start;

    /// <summary>The source this window looks into.</summary>
    public IRandomAccessSource Inner => _inner;

    /// <inheritdoc />
    public int Read(long offset, Span<byte> destination)
    {
        if (offset >= Length)
        {
            return 0;
        }

        long max = Length - offset;
        if (destination.Length > max)
        {
            destination = destination[..(int)max];
        }

        return _inner.Read(_start + offset, destination);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsInner)
        {
            _inner.Dispose();
        }
    }
}
