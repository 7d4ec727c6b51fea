namespace VmState.Memory;

/// <summary>
/// Internal capability of a physical memory whose pages lie in an input file as runs of records (a migration
/// stream): a bulk writer reads a range's records into one buffer with a few large positional reads and writes the
/// pages straight from there (a gathered write), without copying them into a flat buffer first.
/// </summary>
internal interface IGatherMemory
{
    /// <summary>
    /// Reads [<paramref name="address"/>, + <paramref name="length"/>) for a gathered write: the page records go into
    /// <paramref name="buffer"/> (at most <see cref="GatherBufferSize"/> bytes of it) and <paramref name="pieces"/>
    /// gets, in address order, one piece per page or part of a page: where its bytes are and how long it is.
    /// Pieces known to be zero are not listed (the caller leaves holes). False, with nothing read, when the range
    /// cannot be gathered (not backed by one block, or not page-aligned); the caller then reads it flat.
    /// </summary>
    bool TryGather(ulong address, int length, byte[] buffer, List<GatherPiece> pieces);

    /// <summary>How large a buffer <see cref="TryGather"/> needs for <paramref name="length"/> bytes of memory.</summary>
    int GatherBufferSize(int length);
}

/// <summary>
/// One piece of a gathered range: <see cref="Length"/> bytes at <see cref="Offset"/> into the range, held in
/// <see cref="Data"/> (a slice of the gather buffer, or a page filled with one byte).
/// </summary>
internal readonly record struct GatherPiece(int Offset, int Length, ReadOnlyMemory<byte> Data);
