namespace VmState.Memory;

/// <summary>The part of an access that falls in one memory range.</summary>
/// <param name="RangeIndex">Index of the range in the list.</param>
/// <param name="Address">First address of the piece.</param>
/// <param name="Offset">Offset of the piece in the caller's buffer.</param>
/// <param name="Length">Bytes in the piece.</param>
public readonly record struct RangePiece(int RangeIndex, ulong Address, int Offset, int Length);
