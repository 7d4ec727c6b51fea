namespace VmState.Memory;

/// <summary>
/// Splits an access [address, address + length) at range boundaries, stopping at the first address no range covers;
/// an allocation-free enumerator shared by every <see cref="IPhysicalMemory"/> that serves several ranges.
/// </summary>
public struct RangePieces
{
    private readonly IReadOnlyList<MemoryRange> _ranges;
    private readonly ulong _address;
    private readonly int _length;
    private readonly int _maxPiece;
    private int _done;

    /// <summary>Pieces of at most <paramref name="maxPiece"/> bytes.</summary>
    public RangePieces(IReadOnlyList<MemoryRange> ranges, ulong address, int length, int maxPiece = int.MaxValue)
    {
        _ranges = ranges;
        _address = address;
        _length = length;
        _maxPiece = maxPiece;
        _done = 0;
        Current = default;
    }

    /// <summary>The current piece.</summary>
    public RangePiece Current { get; private set; }

    /// <summary>The enumerator (this struct).</summary>
    public readonly RangePieces GetEnumerator() => this;

    /// <summary>Advances to the next piece; false at the end of the access or of the backed ranges.</summary>
    public bool MoveNext()
    {
        if (_done >= _length)
        {
            return false;
        }

        ulong a = _address + (ulong)_done;
        int ri = _ranges.FindRange(a);
        if (ri < 0)
        {
            return false;
        }

        int n = (int)Math.Min(Math.Min((ulong)(_length - _done), _ranges[ri].End - a), (ulong)_maxPiece);
        Current = new RangePiece(ri, a, _done, n);
        _done += n;
        return true;
    }
}
