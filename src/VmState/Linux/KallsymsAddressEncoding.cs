namespace VmState.Linux;

/// <summary>
/// How <c>scripts/kallsyms.c</c> stored the symbol addresses (the timeline is in drgn's <c>libdrgn/kallsyms.c</c>).
/// </summary>
public enum KallsymsAddressEncoding
{
    /// <summary><c>kallsyms_addresses</c>: one absolute pointer per symbol (kernels without CONFIG_KALLSYMS_BASE_RELATIVE).</summary>
    Absolute,

    /// <summary><c>kallsyms_offsets</c>: address = <c>kallsyms_relative_base</c> + (u32)offset (CONFIG_KALLSYMS_BASE_RELATIVE, 4.6+).</summary>
    BaseRelative,

    /// <summary>
    /// <c>kallsyms_offsets</c> with CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86-64 until 6.15): an offset ≥ 0 is an absolute
    /// value (per-CPU symbols), a negative one gives <c>kallsyms_relative_base</c> − 1 − offset.
    /// </summary>
    AbsolutePercpu,

    /// <summary><c>kallsyms_offsets</c> relative to the address of each offset slot, no relative base (7.0, commit a081b5789255d).</summary>
    PlaceRelative,
}
