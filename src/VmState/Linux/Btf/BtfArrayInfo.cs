namespace VmState.Linux.Btf;

/// <summary>The extra data of a BTF ARRAY (<c>struct btf_array</c>).</summary>
/// <param name="ElementType">Element type.</param>
/// <param name="IndexType">Index type (an INT).</param>
/// <param name="Length">Number of elements (0 for a flexible array member).</param>
public readonly record struct BtfArrayInfo(int ElementType, int IndexType, uint Length);
