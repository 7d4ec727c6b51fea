namespace VmState.Linux;

/// <summary>Where the kallsyms tables were found in the guest and how they are encoded.</summary>
public sealed record KallsymsLayout
{
    /// <summary>How the tables were located: "VMCOREINFO" or a structural scan.</summary>
    public required string Source { get; init; }

    /// <summary>Virtual address of <c>kallsyms_num_syms</c> (or the physical address, when scanned in raw physical memory).</summary>
    public required ulong NumSyms { get; init; }

    /// <summary>Address of <c>kallsyms_names</c>.</summary>
    public required ulong Names { get; init; }

    /// <summary>Address of <c>kallsyms_markers</c>.</summary>
    public required ulong Markers { get; init; }

    /// <summary>Address of <c>kallsyms_seqs_of_names</c> when the scan found it (6.2+, and backports such as Debian 6.1.y), else null.</summary>
    public ulong? SeqsOfNames { get; init; }

    /// <summary>Address of <c>kallsyms_token_table</c>.</summary>
    public required ulong TokenTable { get; init; }

    /// <summary>Address of <c>kallsyms_token_index</c>.</summary>
    public required ulong TokenIndex { get; init; }

    /// <summary>Address of <c>kallsyms_offsets</c>, or of <c>kallsyms_addresses</c> for <see cref="KallsymsAddressEncoding.Absolute"/>.</summary>
    public required ulong AddressTable { get; init; }

    /// <summary>Address of <c>kallsyms_relative_base</c>, when the encoding has one.</summary>
    public ulong? RelativeBaseAddress { get; init; }

    /// <summary>The value of <c>kallsyms_relative_base</c> (the runtime <c>_text</c>), when the encoding has one.</summary>
    public ulong? RelativeBase { get; init; }

    /// <summary>The address encoding chosen.</summary>
    public required KallsymsAddressEncoding Encoding { get; init; }

    /// <summary>True when name lengths were read as 1–2 byte ULEB128 ("kallsyms: support big kernel symbols", Linux 6.1).</summary>
    public required bool BigLengths { get; init; }

    /// <summary>"pre-6.4" (addresses before num_syms) or "6.4+" (addresses after token_index).</summary>
    public required string Order { get; init; }
}
