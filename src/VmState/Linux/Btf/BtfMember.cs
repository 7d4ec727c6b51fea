namespace VmState.Linux.Btf;

/// <summary>A member of a BTF struct or union (<c>struct btf_member</c>).</summary>
/// <param name="Name">Member name; empty for an anonymous struct or union member.</param>
/// <param name="TypeId">The member's type.</param>
/// <param name="BitOffset">Offset in bits from the start of the containing struct or union.</param>
/// <param name="BitfieldSize">Width in bits for a bitfield, 0 for an ordinary member.</param>
public readonly record struct BtfMember(string Name, int TypeId, uint BitOffset, uint BitfieldSize)
{
    /// <summary>Byte offset of the member (of the byte holding its first bit, for a bitfield).</summary>
    public uint ByteOffset => BitOffset / 8;

    /// <summary>True for a bitfield.</summary>
    public bool IsBitfield => BitfieldSize != 0;

    /// <summary>True for an anonymous member (its members are reachable as if they were the container's own).</summary>
    public bool IsAnonymous => Name.Length == 0;
}
