using VmState.Linux;
using VmState.Memory;

namespace VmState.Events;

/// <summary>
/// The kernel-virtual address to set a breakpoint or watchpoint at for a guest-physical address. QEMU matches
/// breakpoints (<c>Z0</c>/<c>Z1</c>, under TCG and KVM alike) and watchpoints on the virtual address of the fetch or
/// access, so a physical address must first become the one virtual address the guest uses for it: kernel code runs
/// from the kernel image mapping (<c>_text</c>..<c>_etext</c>, physically contiguous), kernel data in the image is
/// reached through the same mapping, and other memory (slab, page cache, page tables) through the direct map at
/// <see cref="LinuxKernel.PageOffsetBase"/>. Code outside the image (modules, BPF) has no fixed virtual address for a
/// physical page, so those addresses are refused.
/// </summary>
public static class PhysicalTraceAddress
{
    /// <summary>The kernel-image virtual address of the instruction at <paramref name="physical"/>.</summary>
    /// <exception cref="InvalidOperationException">The address is not in the kernel's text.</exception>
    public static ulong ForCode(LinuxKernel kernel, ulong physical)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        (ulong text, ulong end) = Image(kernel, data: false);
        return InImage(kernel, physical, text, end)
            ?? throw new InvalidOperationException($"physical address 0x{physical:x} is not in the kernel's text: breakpoints match the virtual address an instruction is fetched at, and code outside the kernel image (modules, BPF) has no fixed virtual address for a physical page; give its virtual address instead");
    }

    /// <summary>
    /// The kernel-virtual address the guest reaches the data at <paramref name="physical"/> through: the kernel image
    /// mapping for the image's own data, else the direct map.
    /// </summary>
    /// <exception cref="InvalidOperationException">The address is beyond the guest's RAM.</exception>
    public static ulong ForData(LinuxKernel kernel, ulong physical)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        (ulong text, ulong end) = Image(kernel, data: true);
        if (InImage(kernel, physical, text, end) is ulong image)
        {
            return image;
        }

        foreach (MemoryRange r in kernel.Memory.Ranges)
        {
            if (physical >= r.Start && physical < r.End)
            {
                return kernel.PageOffsetBase + physical;
            }
        }

        throw new InvalidOperationException($"physical address 0x{physical:x} is not in the guest's RAM");
    }

    private static (ulong Text, ulong End) Image(LinuxKernel kernel, bool data)
    {
        ulong text = kernel.Symbols.AddressOf("_text");
        ulong end = 0;
        foreach (string name in data ? (string[])["_end", "__bss_stop", "_edata", "_etext"] : ["_etext"])
        {
            if (kernel.Symbols.TryGetAddress(name, out end))
            {
                break;
            }
        }

        return (text, end > text ? end : text);
    }

    /// <summary>The image address of <paramref name="physical"/>, checked through the kernel's page tables; null when outside.</summary>
    private static ulong? InImage(LinuxKernel kernel, ulong physical, ulong text, ulong end)
    {
        if (!kernel.AddressSpace.TryTranslate(text, out ulong textPhysical) || physical < textPhysical || physical - textPhysical >= end - text)
        {
            return null;
        }

        ulong virtualAddress = text + (physical - textPhysical);
        return kernel.AddressSpace.TryTranslate(virtualAddress, out ulong back) && back == physical ? virtualAddress : null;
    }
}
