using System.Globalization;
using System.Text;
using VmState.Arch.Arm64;
using VmState.Machine;

namespace VmState.Linux;

/// <summary>
/// Where an AArch64 Linux kernel is, from the VMCOREINFO it keeps in RAM (Linux <c>arch/arm64/kernel/crash_core.c</c>:
/// NUMBER(VA_BITS), NUMBER(kimage_voffset), NUMBER(PHYS_OFFSET), NUMBER(KERNELPACMASK), KERNELOFFSET; generic
/// <c>kernel/crash_core.c</c>: SYMBOL(swapper_pg_dir), SYMBOL(init_uts_ns)). Debian's arm64 kernel has no data
/// symbols in kallsyms (CONFIG_KALLSYMS_ALL off), so this is where a profile-free bootstrap starts: the kernel's own
/// page tables (swapper_pg_dir, not TTBR1_EL1, which under KPTI may hold the trampoline tables at EL0), the image and
/// linear-map offsets, and the PAC bits to strip from return addresses.
/// </summary>
/// <param name="VaBits">NUMBER(VA_BITS): kernel virtual address bits (48 on Debian).</param>
/// <param name="KimageVoffset">NUMBER(kimage_voffset): kernel image virtual address − physical address.</param>
/// <param name="PhysOffset">NUMBER(PHYS_OFFSET): the physical address of the start of the linear map.</param>
/// <param name="SwapperPgDir">SYMBOL(swapper_pg_dir): virtual address of the kernel's top-level table.</param>
/// <param name="KernelPacMask">NUMBER(KERNELPACMASK): the pointer-authentication bits of kernel addresses, when given.</param>
/// <param name="KernelOffset">KERNELOFFSET: the KASLR displacement of the image.</param>
/// <param name="InitUtsNs">SYMBOL(init_uts_ns), when given.</param>
public sealed record Arm64KernelLayout(int VaBits, ulong KimageVoffset, ulong PhysOffset, ulong SwapperPgDir, ulong? KernelPacMask, ulong? KernelOffset, ulong? InitUtsNs)
{
    /// <summary>Offset of <c>release</c> in <c>struct new_utsname</c> (sysname[65], nodename[65], release[65]).</summary>
    private const int UtsReleaseOffset = 65 * 2;

    /// <summary>The start of the linear map: the lowest address of the upper half (0xffff000000000000 at 48 bits).</summary>
    public ulong PageOffset => ~((1UL << VaBits) - 1);

    /// <summary>The physical address of swapper_pg_dir (an image address: <c>va − kimage_voffset</c>).</summary>
    public ulong SwapperPgDirPhysical => SwapperPgDir - KimageVoffset;

    /// <summary>
    /// The layout VMCOREINFO describes, or null when it is not an arm64 kernel's (no NUMBER(kimage_voffset)) or misses
    /// a value the layout needs.
    /// </summary>
    public static Arm64KernelLayout? FromVmcoreinfo(Vmcoreinfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        if (Value(info, "NUMBER(kimage_voffset)") is not ulong voffset || Value(info, "NUMBER(PHYS_OFFSET)") is not ulong physOffset
            || Value(info, "NUMBER(VA_BITS)") is not ulong vaBits || vaBits is < 36 or > 52 || info.Symbol("swapper_pg_dir") is not ulong swapper)
        {
            return null;
        }

        return new Arm64KernelLayout((int)vaBits, voffset, physOffset, swapper, Value(info, "NUMBER(KERNELPACMASK)"), info.KernelOffset, info.Symbol("init_uts_ns"));
    }

    /// <summary>The physical address of a kernel image address (text, data, bss: <c>va − kimage_voffset</c>).</summary>
    public ulong ImageToPhysical(ulong va) => va - KimageVoffset;

    /// <summary>The physical address of a linear-map address (<c>va − PAGE_OFFSET + PHYS_OFFSET</c>).</summary>
    public ulong LinearToPhysical(ulong va) => va - PageOffset + PhysOffset;

    /// <summary>
    /// The base of the <c>struct page</c> array: <c>vmemmap = (struct page *)VMEMMAP_START − (memstart_addr &gt;&gt;
    /// PAGE_SHIFT)</c> with <c>VMEMMAP_START = −(1 &lt;&lt; (VA_BITS − VMEMMAP_SHIFT))</c> and VMEMMAP_SHIFT =
    /// PAGE_SHIFT − STRUCT_PAGE_MAX_SHIFT = 12 − 6 (Linux 5.11+ arm64 <c>asm/memory.h</c>, <c>asm/pgtable.h</c>);
    /// memstart_addr (PHYS_OFFSET) is signed, and negative when KASLR moves the linear map.
    /// </summary>
    /// <param name="structPageSize">sizeof(struct page), from BTF.</param>
    public ulong Vmemmap(ulong structPageSize)
    {
        ulong start = 0UL - (1UL << (VaBits - 6));
        return start - (ulong)((long)PhysOffset >> 12) * structPageSize;
    }

    /// <summary>A kernel return address without its pointer-authentication code (the PAC bits set, as in a kernel pointer).</summary>
    public ulong StripPac(ulong address) => KernelPacMask is ulong mask ? address | mask : address;

    /// <summary>
    /// The kernel's address space: vCPU <paramref name="cpu"/>'s TCR_EL1 and TTBR0_EL1 with swapper_pg_dir as the
    /// upper half's table base.
    /// </summary>
    /// <exception cref="NotSupportedException">The vCPU uses a granule other than 4 KiB, or LPA2.</exception>
    public Arm64AddressSpace KernelAddressSpace(MachineState machine, Arm64CpuState cpu)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(cpu);
        return new Arm64AddressSpace(machine.Memory, cpu.TcrEl1, cpu.Ttbr0El1, SwapperPgDirPhysical);
    }

    /// <summary>
    /// The kernel release (init_uts_ns.name.release, what <c>uname -r</c> prints) read through
    /// <paramref name="space"/>, or null when VMCOREINFO gives no init_uts_ns or the read fails.
    /// </summary>
    public string? ReadRelease(Arm64AddressSpace space, Vmcoreinfo info)
    {
        ArgumentNullException.ThrowIfNull(space);
        ArgumentNullException.ThrowIfNull(info);
        if (InitUtsNs is not ulong uts)
        {
            return null;
        }

        long nameOffset = info.Offset("uts_namespace.name") ?? 0;
        byte[] release = new byte[65];
        if (space.Read(uts + (ulong)nameOffset + UtsReleaseOffset, release) != release.Length)
        {
            return null;
        }

        int nul = Array.IndexOf(release, (byte)0);
        return Encoding.ASCII.GetString(release, 0, nul < 0 ? release.Length : nul);
    }

    /// <summary>One line for messages: the values found.</summary>
    public string Describe() =>
        $"VA_BITS={VaBits}, kimage_voffset=0x{KimageVoffset:x}, PHYS_OFFSET=0x{PhysOffset:x}, swapper_pg_dir=0x{SwapperPgDir:x} (physical 0x{SwapperPgDirPhysical:x}), KERNELPACMASK={(KernelPacMask is ulong m ? $"0x{m:x}" : "-")}";

    // arm64's NUMBER() values are printed in hex ("0x…") where the generic ones are decimal.
    private static ulong? Value(Vmcoreinfo info, string key)
    {
        string? s = info.Get(key);
        if (s is null)
        {
            return null;
        }

        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            return ulong.TryParse(s.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong h) ? h : null;
        }

        return long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long d) ? (ulong)d : null;
    }
}
