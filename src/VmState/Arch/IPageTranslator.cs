using VmState.Memory;

namespace VmState.Arch;

/// <summary>A virtual address space as <see cref="VirtualMemoryReader"/> reads it: a translation and the memory behind it.</summary>
internal interface IPageTranslator
{
    /// <summary>The physical memory the translations point into.</summary>
    IPhysicalMemory Memory { get; }

    /// <summary>Translates <paramref name="virtualAddress"/>; false when it is not mapped.</summary>
    bool TryTranslate(ulong virtualAddress, out ulong physicalAddress);
}
