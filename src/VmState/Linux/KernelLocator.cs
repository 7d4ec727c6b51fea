using System.Text;
using VmState.Arch.X86;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Linux;

/// <summary>
/// Finds a Linux x86-64 kernel in a machine with no profile (<c>profile-free-linux.md</c> §1, §2): the page-table
/// root from VMCOREINFO, else from a vCPU's CR3, else from the banner and kallsyms found in raw physical memory;
/// the image from the page directory over <c>__START_KERNEL_map</c>; kallsyms from the VMCOREINFO addresses or a
/// structural scan; and every candidate validated by reading "Linux version " at <c>linux_banner</c>.
/// </summary>
public static class KernelLocator
{
    private const ulong PhysMask = 0x000F_FFFF_FFFF_F000UL;
    private const int MaxBannerHits = 64;
    private static readonly byte[] s_bannerPrefix = "Linux version "u8.ToArray();

    /// <summary>Locates the kernel, recording each step in <see cref="LinuxKernel.Evidence"/>.</summary>
    /// <exception cref="KernelDataException">No source produced a kernel that validates; the message lists what each step found.</exception>
    public static LinuxKernel Locate(MachineState machine, KernelLocatorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        options ??= KernelLocatorOptions.Default;
        LinuxKernel kernel = LocateInMemory(machine, options);
        KernelOverrides.Apply(kernel, options);
        return kernel;
    }

    private static LinuxKernel LocateInMemory(MachineState machine, KernelLocatorOptions options)
    {
        var evidence = new List<string>();
        Vmcoreinfo? info = null;
        string? infoSource = null;
        if (options.UseVmcoreinfo)
        {
            if (VmcoreinfoLocator.Find(machine, scan: true) is (byte[] note, string how))
            {
                info = Vmcoreinfo.FromNote(note);
                infoSource = how;
                evidence.Add($"VMCOREINFO found ({how}): OSRELEASE={info.OsRelease}, KERNELOFFSET={Hex(info.KernelOffset)}, phys_base={info.PhysBase?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"}, pgtable_l5_enabled={(info.FiveLevelPaging is bool l5 ? l5 ? "1" : "0" : "-")}");
            }
            else
            {
                evidence.Add("VMCOREINFO: none in the input, none from a vmcoreinfo device, none found by scanning RAM");
            }
        }

        PagingMode? cpuMode = null;
        foreach (X86CpuState c in machine.Cpus)
        {
            if (ModeOf(c) is PagingMode.Level4 or PagingMode.Level5)
            {
                cpuMode = ModeOf(c);
                break;
            }
        }

        // 1. VMCOREINFO: DTB = init_top_pgt (= swapper_pg_dir) − __START_KERNEL_map + phys_base (Volatility's _vmcoreinfo_get_dtb).
        if (info is not null)
        {
            ulong? pgt = info.Symbol("init_top_pgt") ?? info.Symbol("swapper_pg_dir");
            if (pgt is ulong top && info.PhysBase is long physBase && top >= KernelImageMap.StartKernelMap)
            {
                ulong root = (ulong)((long)(top - KernelImageMap.StartKernelMap) + physBase);
                foreach (PagingMode mode in Modes(info.FiveLevelPaging, cpuMode))
                {
                    LinuxKernel? k = TryRoot(machine, new AddressSpace(machine.Memory, mode, root), $"VMCOREINFO init_top_pgt 0x{top:x} → physical 0x{root:x}", info, infoSource, KernelLocationMethod.Vmcoreinfo, evidence);
                    if (k is not null)
                    {
                        return k;
                    }
                }
            }
            else
            {
                evidence.Add("VMCOREINFO has no SYMBOL(init_top_pgt)/SYMBOL(swapper_pg_dir) with NUMBER(phys_base) (not an x86-64 kernel?)");
            }
        }

        // 2. CR3: clear PCID/flag bits, then try the PTI kernel half (bit 12 clear) before the raw value (crash kaslr_helper.c calc_kaslr_offset).
        if (options.UseCpuState)
        {
            var tried = new HashSet<(ulong, PagingMode)>();
            foreach (X86CpuState c in machine.Cpus)
            {
                PagingMode mode = ModeOf(c);
                if (mode is not (PagingMode.Level4 or PagingMode.Level5))
                {
                    evidence.Add($"vCPU {c.Index}: not in 64-bit paging mode ({mode}), CR3 not usable");
                    continue;
                }

                ulong cr3 = c.Cr3 & PhysMask;
                foreach (ulong root in new[] { cr3 & ~0x1000UL, cr3 })
                {
                    if (!tried.Add((root, mode)))
                    {
                        continue;
                    }

                    string label = $"vCPU {c.Index} CR3 0x{c.Cr3:x}{(root != cr3 ? " with bit 12 (PTI user half) cleared" : string.Empty)} → 0x{root:x}, {(mode == PagingMode.Level5 ? 5 : 4)}-level";
                    LinuxKernel? k = TryRoot(machine, new AddressSpace(machine.Memory, mode, root), label, info, infoSource, KernelLocationMethod.ControlRegister, evidence);
                    if (k is not null)
                    {
                        return k;
                    }
                }
            }

            if (machine.Cpus.Count == 0)
            {
                evidence.Add("no vCPU state in the input");
            }
        }

        // 3. No usable CPU state: kallsyms from raw physical memory, then the banner that init_top_pgt maps back to itself (§1.6).
        if (options.UseBannerScan)
        {
            LinuxKernel? k = TryBanner(machine, info, infoSource, cpuMode, evidence);
            if (k is not null)
            {
                return k;
            }
        }

        throw new KernelDataException("Linux kernel", "not found. " + string.Join(" | ", evidence));
    }

    /// <summary>
    /// The vCPU's paging mode. QEMU's ELF "QEMU" note (<c>target/i386/arch_dump.c</c> QEMUCPUState) carries no EFER,
    /// so a core reads back with EFER = 0; there a 64-bit code segment (CS.L) with CR4.PAE and CR0.PG means long mode.
    /// </summary>
    private static PagingMode ModeOf(X86CpuState c)
    {
        PagingMode mode = AddressSpace.ModeOf(c);
        if (mode == PagingMode.Pae && c.Efer == 0 && c.Segments[X86CpuState.Cs].Long)
        {
            return (c.Cr4 & (1UL << 12)) != 0 ? PagingMode.Level5 : PagingMode.Level4;
        }

        return mode;
    }

    private static IEnumerable<PagingMode> Modes(bool? fiveLevel, PagingMode? cpuMode)
    {
        if (fiveLevel is bool l5)
        {
            return [l5 ? PagingMode.Level5 : PagingMode.Level4];
        }

        if (cpuMode is PagingMode m)
        {
            return [m];
        }

        // CONFIG_X86_5LEVEL alone does not mean LA57 is on (§4.6): try both.
        return [PagingMode.Level4, PagingMode.Level5];
    }

    private static string Hex(ulong? v) => v is ulong x ? $"0x{x:x}" : "-";

    private static string Signed(long v) => v < 0 ? $"-0x{(ulong)-v:x}" : $"0x{v:x}";

    private static LinuxKernel? TryRoot(MachineState machine, AddressSpace space, string label, Vmcoreinfo? info, string? infoSource, KernelLocationMethod method, List<string> evidence)
    {
        KernelImageMap? image = KernelImageMap.Find(space, out string failure);
        if (image is null)
        {
            evidence.Add($"{label}: {failure}");
            return null;
        }

        ulong text = image.Start;
        ulong textPa = image.PhysicalOf(text)!.Value;
        long physBase = (long)textPa - (long)(text - KernelImageMap.StartKernelMap);
        evidence.Add($"{label}: kernel image mapped at 0x{text:x}..0x{image.End:x} ({image.MappedBytes >> 20} MiB in {image.Runs.Count} run{(image.Runs.Count == 1 ? string.Empty : "s")}); _text physical 0x{textPa:x}, phys_base {Signed(physBase)}, KASLR offset {Signed((long)(text - LinuxKernel.DefaultTextAddress))}");
        bool infoAgrees = true;
        if (info?.Symbol("_stext") is ulong stext && stext != text)
        {
            if (method == KernelLocationMethod.Vmcoreinfo)
            {
                evidence.Add($"{label}: VMCOREINFO SYMBOL(_stext)=0x{stext:x} differs from the first mapped address; rejected");
                return null;
            }

            // A note from another kernel (e.g. the one before a kexec): do not use its table addresses.
            evidence.Add($"{label}: VMCOREINFO SYMBOL(_stext)=0x{stext:x} disagrees with these page tables; ignoring its kallsyms addresses");
            infoAgrees = false;
        }

        Kallsyms? symbols = null;
        if (info is not null && infoAgrees)
        {
            try
            {
                symbols = Kallsyms.FromVmcoreinfo(space, info, "_text", text);
                if (symbols is null)
                {
                    evidence.Add("VMCOREINFO has no kallsyms table addresses (a kernel before 6.0): scanning the image instead");
                }
            }
            catch (KernelDataException e)
            {
                evidence.Add($"kallsyms from VMCOREINFO addresses failed: {e.Message}; scanning the image instead");
            }
        }

        byte[]? bytes = null;
        if (symbols is null)
        {
            bytes = image.Read(space.Memory);
            try
            {
                symbols = Kallsyms.Scan(bytes, text, imageIsVirtual: true, "_text", text);
            }
            catch (KernelDataException e)
            {
                evidence.Add($"{label}: {e.Message}");
                return null;
            }
        }

        KallsymsLayout l = symbols.Layout;
        evidence.Add($"kallsyms: {symbols.Count} symbols ({l.Source}; {l.Encoding} addresses, {l.Order} table order, {(l.BigLengths ? "1-2 byte" : "1-byte")} name lengths{(l.SeqsOfNames is not null ? ", with kallsyms_seqs_of_names" : string.Empty)}); kallsyms_names at 0x{l.Names:x}, kallsyms_token_table at 0x{l.TokenTable:x}");
        if (!Validate(space, symbols, bytes, text, out string banner, out ulong bannerAddress, out string why))
        {
            evidence.Add($"{label}: {why}; rejected");
            return null;
        }

        evidence.Add($"validated: linux_banner at 0x{bannerAddress:x} reads \"{Shorten(banner)}\"");
        return Finish(new LinuxKernel(machine, space, text, image.End, symbols, banner, bannerAddress, info, infoSource, method, evidence));
    }

    private static LinuxKernel Finish(LinuxKernel kernel)
    {
        // Reading page_offset_base once enables the direct-map fast path for every later read.
        try
        {
            _ = kernel.PageOffsetBase;
        }
        catch (KernelDataException)
        {
            // Reads then always walk the page tables; nothing else depends on it.
        }

        return kernel;
    }

    private static string Shorten(string s) => s.Length <= 100 ? s : s[..97] + "...";

    /// <summary>linux_banner must translate and read "Linux version "; without the symbol, look for the string in the image.</summary>
    private static bool Validate(AddressSpace space, Kallsyms symbols, byte[]? image, ulong text, out string banner, out ulong address, out string why)
    {
        banner = string.Empty;
        address = 0;
        if (symbols.TryGetAddress("linux_banner", out ulong at))
        {
            address = at;
            byte[] buf = new byte[1024];
            int n = space.Read(at, buf);
            if (n < s_bannerPrefix.Length || !buf.AsSpan().StartsWith(s_bannerPrefix))
            {
                why = n == 0 ? $"linux_banner 0x{at:x} does not translate" : $"linux_banner 0x{at:x} does not read \"Linux version \"";
                return false;
            }

            banner = BannerText(buf.AsSpan(0, n));
            why = string.Empty;
            return true;
        }

        // Kernels without CONFIG_KALLSYMS_ALL have no data symbols: find the banner in the image itself.
        image ??= KernelImageMap.Find(space, out _)?.Read(space.Memory) ?? [];
        int i = image.AsSpan().IndexOf(s_bannerPrefix);
        if (i < 0)
        {
            why = "kallsyms has no linux_banner and the image holds no \"Linux version \" string";
            return false;
        }

        address = text + (ulong)i;
        banner = BannerText(image.AsSpan(i, Math.Min(1024, image.Length - i)));
        why = string.Empty;
        return true;
    }

    private static string BannerText(ReadOnlySpan<byte> s)
    {
        int nul = s.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul >= 0 ? s[..nul] : s).TrimEnd('\n');
    }

    private static LinuxKernel? TryBanner(MachineState machine, Vmcoreinfo? info, string? infoSource, PagingMode? cpuMode, List<string> evidence)
    {
        IPhysicalMemory memory = machine.Memory;
        List<ulong> tokenHits = FindAll(memory, "0\01\02\03\04\05\06\07\08\09\0"u8, 256);
        Kallsyms? symbols = null;
        ulong coveredEnd = 0;
        foreach (ulong hit in tokenHits)
        {
            if (hit < coveredEnd)
            {
                continue;
            }

            // The tables sit within a few MiB before the token table (pre-6.4) or around it (6.4+); the image is physically contiguous.
            int ri = memory.Ranges.FindRange(hit);
            MemoryRange r = memory.Ranges[ri];
            ulong lo = Math.Max(r.Start, hit > (48UL << 20) ? (hit - (48UL << 20)) & ~0xFFFUL : 0);
            ulong hi = Math.Min(r.End, hit + (8UL << 20));
            byte[] window = new byte[hi - lo];
            memory.Read(lo, window);
            coveredEnd = hi;
            try
            {
                symbols = Kallsyms.Scan(window, lo, imageIsVirtual: false, null, null);
                evidence.Add($"physical scan: kallsyms found with the token table at physical 0x{symbols.Layout.TokenTable:x}: {symbols.Count} symbols, {symbols.Layout.Encoding} addresses");
                break;
            }
            catch (KernelDataException e)
            {
                evidence.Add($"physical scan around 0x{hit:x}: {e.Problem}");
            }
        }

        if (symbols is null)
        {
            evidence.Add($"physical scan: no kallsyms tables ({tokenHits.Count} token-table signature hits)");
            return null;
        }

        if (!symbols.TryGetAddress("linux_banner", out ulong bannerVa) || !(symbols.TryGetAddress("init_top_pgt", out ulong pgt) || symbols.TryGetAddress("swapper_pg_dir", out pgt)))
        {
            evidence.Add("physical scan: kallsyms lacks linux_banner or init_top_pgt (no CONFIG_KALLSYMS_ALL)");
            return null;
        }

        List<ulong> banners = FindAll(memory, s_bannerPrefix, MaxBannerHits);
        foreach (ulong pa in banners)
        {
            // phys_base = PA(banner) − (VA(banner) − __START_KERNEL_map); the root is init_top_pgt converted the same way.
            long physBase = (long)pa - (long)(bannerVa - KernelImageMap.StartKernelMap);
            long root = (long)(pgt - KernelImageMap.StartKernelMap) + physBase;
            if (root < 0 || (root & 0xFFF) != 0)
            {
                continue;
            }

            foreach (PagingMode mode in Modes(info?.FiveLevelPaging, cpuMode))
            {
                var space = new AddressSpace(memory, mode, (ulong)root);
                if (!space.TryTranslate(bannerVa, out ulong back) || back != pa)
                {
                    continue;
                }

                evidence.Add($"banner at physical 0x{pa:x}: phys_base {Signed(physBase)} makes init_top_pgt 0x{pgt:x} → 0x{root:x}, and that {(mode == PagingMode.Level5 ? 5 : 4)}-level table maps linux_banner back to it");
                KernelImageMap? image = KernelImageMap.Find(space, out string failure);
                if (image is null)
                {
                    evidence.Add($"banner candidate 0x{pa:x}: {failure}");
                    continue;
                }

                ulong text = symbols.TryGetAddress("_text", out ulong t) ? t : image.Start;
                if (text != image.Start)
                {
                    evidence.Add($"banner candidate 0x{pa:x}: _text 0x{text:x} is not the first mapped address 0x{image.Start:x}");
                    continue;
                }

                if (!Validate(space, symbols, null, text, out string banner, out ulong bannerAddress, out string why))
                {
                    evidence.Add($"banner candidate 0x{pa:x}: {why}");
                    continue;
                }

                evidence.Add($"validated: linux_banner at 0x{bannerAddress:x} reads \"{Shorten(banner)}\"");
                return Finish(new LinuxKernel(machine, space, text, image.End, symbols, banner, bannerAddress, info, infoSource, KernelLocationMethod.Banner, evidence));
            }
        }

        evidence.Add($"banner: none of {banners.Count} \"Linux version \" hits in physical memory validates with init_top_pgt");
        return null;
    }

    /// <summary>Physical addresses of <paramref name="needle"/> in all RAM, in order, at most <paramref name="limit"/>.</summary>
    private static List<ulong> FindAll(IPhysicalMemory memory, ReadOnlySpan<byte> needle, int limit)
    {
        const int Chunk = 16 << 20;
        var hits = new List<ulong>();
        byte[] buf = new byte[Chunk + needle.Length];
        foreach (MemoryRange r in memory.Ranges)
        {
            for (ulong a = r.Start; a < r.End && hits.Count < limit; a += Chunk)
            {
                int n = memory.Read(a, buf.AsSpan(0, (int)Math.Min((ulong)buf.Length, r.End - a)));
                ReadOnlySpan<byte> span = buf.AsSpan(0, n);
                int from = 0;
                while (hits.Count < limit)
                {
                    int i = span[from..].IndexOf(needle);
                    if (i < 0 || from + i >= Chunk)
                    {
                        break;
                    }

                    hits.Add(a + (ulong)(from + i));
                    from += i + 1;
                }
            }
        }

        return hits;
    }
}
