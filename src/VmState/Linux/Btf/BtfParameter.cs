namespace VmState.Linux.Btf;

/// <summary>One parameter of a BTF FUNC_PROTO (<c>struct btf_param</c>); a last parameter of type 0 with no name means "...".</summary>
/// <param name="Name">Parameter name (often empty in prototypes of function pointers).</param>
/// <param name="TypeId">Parameter type.</param>
public readonly record struct BtfParameter(string Name, int TypeId);
