namespace VmState.Linux.Btf;

/// <summary>The extra word of a BTF INT (<c>BTF_INT_ENCODING</c>, <c>BTF_INT_OFFSET</c>, <c>BTF_INT_BITS</c>).</summary>
/// <param name="Signed">BTF_INT_SIGNED.</param>
/// <param name="Char">BTF_INT_CHAR.</param>
/// <param name="Bool">BTF_INT_BOOL.</param>
/// <param name="BitOffset">Bit offset of the value inside its storage (0 in practice).</param>
/// <param name="Bits">Number of value bits.</param>
public readonly record struct BtfIntEncoding(bool Signed, bool Char, bool Bool, int BitOffset, int Bits);
