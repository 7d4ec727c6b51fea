namespace VmState.Linux.Btf;

/// <summary>One entry of a BTF DATASEC (<c>struct btf_var_secinfo</c>).</summary>
/// <param name="TypeId">The VAR (or FUNC) type.</param>
/// <param name="Offset">Offset inside the section (for <c>.data..percpu</c>: the per-CPU offset of the variable).</param>
/// <param name="Size">Size in bytes.</param>
public readonly record struct BtfSectionVariable(int TypeId, uint Offset, uint Size);
