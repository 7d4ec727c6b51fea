namespace VmState.Linux.Btf;

/// <summary>The BTF header (<c>struct btf_header</c>); section offsets are relative to the end of the header.</summary>
/// <param name="Version">BTF version (1).</param>
/// <param name="Flags">Header flags (0).</param>
/// <param name="HeaderLength">hdr_len: size of the header; newer writers may append fields.</param>
/// <param name="TypeOffset">type_off.</param>
/// <param name="TypeLength">type_len.</param>
/// <param name="StringOffset">str_off.</param>
/// <param name="StringLength">str_len.</param>
public readonly record struct BtfHeader(byte Version, byte Flags, uint HeaderLength, uint TypeOffset, uint TypeLength, uint StringOffset, uint StringLength);
