namespace VmState.Arch.X86;

/// <summary>x86 paging modes (Intel SDM vol. 3A §4.1.1).</summary>
public enum PagingMode
{
    /// <summary>Paging off: virtual = physical.</summary>
    None,

    /// <summary>32-bit paging: 2 levels of 1024 4-byte entries; 4 MiB pages with CR4.PSE.</summary>
    Bits32,

    /// <summary>PAE paging: a 4-entry PDPT, then 2 levels of 512 8-byte entries; 2 MiB pages.</summary>
    Pae,

    /// <summary>4-level paging (IA-32e, 48-bit addresses); 1 GiB and 2 MiB pages.</summary>
    Level4,

    /// <summary>5-level paging (CR4.LA57, 57-bit addresses).</summary>
    Level5,
}
