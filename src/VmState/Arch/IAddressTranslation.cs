namespace VmState.Arch;

/// <summary>
/// The result of translating a virtual address, whatever the architecture: what every paging walk reports. The
/// entries it read, level by level, are on the architecture's own type (<see cref="X86.Translation"/>,
/// <see cref="Arm64.Arm64Translation"/>).
/// </summary>
public interface IAddressTranslation
{
    /// <summary>The address translated.</summary>
    ulong VirtualAddress { get; }

    /// <summary>The physical address, or null when the translation failed.</summary>
    ulong? PhysicalAddress { get; }

    /// <summary>Size of the page (or block) that maps the address, 0 on failure.</summary>
    ulong PageSize { get; }

    /// <summary>Why the translation failed, or null.</summary>
    string? Failure { get; }

    /// <summary>True when the address is mapped.</summary>
    bool Success { get; }

    /// <summary>True when the mapping allows writes.</summary>
    bool Writable { get; }

    /// <summary>True when the mapping allows user-mode (EL0) access.</summary>
    bool User { get; }
}
