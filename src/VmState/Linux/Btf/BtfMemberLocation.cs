namespace VmState.Linux.Btf;

/// <summary>Where a (possibly nested, possibly anonymous-hidden) member path lands inside a type.</summary>
/// <param name="BitOffset">Offset in bits from the start of the outer type.</param>
/// <param name="TypeId">Type of the member reached.</param>
/// <param name="BitfieldSize">Width in bits when the member is a bitfield, else 0.</param>
public readonly record struct BtfMemberLocation(ulong BitOffset, int TypeId, uint BitfieldSize)
{
    /// <summary>Byte offset (of the byte holding the first bit, for a bitfield).</summary>
    public ulong ByteOffset => BitOffset / 8;

    /// <summary>True for a bitfield.</summary>
    public bool IsBitfield => BitfieldSize != 0;
}
