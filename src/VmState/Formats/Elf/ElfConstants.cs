namespace VmState.Formats.Elf;

/// <summary>ELF constants used by the core reader and writer (System V ABI, ELF-64 Object File Format).</summary>
internal static class ElfConstants
{
    /// <summary>e_type of a core file.</summary>
    public const ushort EtCore = 4;

    /// <summary>e_machine of x86-64.</summary>
    public const ushort EmX86_64 = 62;

    /// <summary>e_machine of AArch64.</summary>
    public const ushort EmAarch64 = 183;

    /// <summary>e_machine of i386.</summary>
    public const ushort Em386 = 3;

    /// <summary>p_type of a loadable segment.</summary>
    public const uint PtLoad = 1;

    /// <summary>p_type of a note segment.</summary>
    public const uint PtNote = 4;

    /// <summary>e_phnum value meaning "the count is in section header 0's sh_info".</summary>
    public const ushort PnXnum = 0xFFFF;

    /// <summary>
    /// The highest guest-physical address x86-64 can have (52 address bits). A PT_LOAD whose <c>p_paddr</c> lies above
    /// it names no physical memory: our cores give their kernel-virtual PT_LOADs <c>p_paddr</c> = <c>p_vaddr</c>
    /// (a kernel-half address), so readers that take memory by <c>p_paddr</c> see them apart from RAM.
    /// </summary>
    public const ulong MaxPhysicalAddress = (1UL << 52) - 1;

    /// <summary>Size of the ELF64 file header.</summary>
    public const int Elf64HeaderSize = 64;

    /// <summary>Size of an ELF64 program header.</summary>
    public const int Elf64PhdrSize = 56;

    /// <summary>Size of an ELF64 section header.</summary>
    public const int Elf64ShdrSize = 64;
}
