namespace VmState.Linux.Btf;

/// <summary>One enumerator of a BTF ENUM or ENUM64 type.</summary>
/// <param name="Name">Enumerator name.</param>
/// <param name="Value">Its value; for an unsigned ENUM64 above <see cref="long.MaxValue"/> the same 64 bits as <see cref="long"/>.</param>
public readonly record struct BtfEnumValue(string Name, long Value);
