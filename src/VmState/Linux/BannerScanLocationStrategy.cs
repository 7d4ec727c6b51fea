using VmState.Arch.X86;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Linux;

/// <summary>
/// No usable CPU state (<c>profile-free-linux.md</c> §1.6): kallsyms found in raw physical memory by its token-table
/// signature, then the <c>"Linux version "</c> hit that <c>init_top_pgt</c>, converted with the phys_base that hit
/// implies, maps back to itself. Slow: reads all RAM.
/// </summary>
internal sealed class BannerScanLocationStrategy : IKernelLocationStrategy
{
    private const int MaxBannerHits = 64;

    /// <inheritdoc />
    public KernelLocationMethod Method => KernelLocationMethod.Banner;

    /// <inheritdoc />
    public LinuxKernel? TryLocate(KernelLocationContext context)
    {
        List<string> evidence = context.Evidence;
        IPhysicalMemory memory = context.Machine.Memory;
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

        List<ulong> banners = FindAll(memory, KernelLocator.BannerPrefix, MaxBannerHits);
        foreach (ulong pa in banners)
        {
            // phys_base = PA(banner) − (VA(banner) − __START_KERNEL_map); the root is init_top_pgt converted the same way.
            long physBase = (long)pa - (long)(bannerVa - KernelImageMap.StartKernelMap);
            long root = (long)(pgt - KernelImageMap.StartKernelMap) + physBase;
            if (root < 0 || (root & 0xFFF) != 0)
            {
                continue;
            }

            foreach (PagingMode mode in context.CandidateModes())
            {
                var space = new AddressSpace(memory, mode, (ulong)root);
                if (!space.TryTranslate(bannerVa, out ulong back) || back != pa)
                {
                    continue;
                }

                evidence.Add($"banner at physical 0x{pa:x}: phys_base {KernelLocator.Signed(physBase)} makes init_top_pgt 0x{pgt:x} → 0x{root:x}, and that {(mode == PagingMode.Level5 ? 5 : 4)}-level table maps linux_banner back to it");
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

                if (!KernelLocator.Validate(space, symbols, null, text, out string banner, out ulong bannerAddress, out string why))
                {
                    evidence.Add($"banner candidate 0x{pa:x}: {why}");
                    continue;
                }

                return KernelLocator.Accept(context, space, text, image.End, symbols, banner, bannerAddress, Method);
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
        ISparseMemory? sparse = memory as ISparseMemory;
        foreach (MemoryRange r in memory.Ranges)
        {
            for (ulong a = r.Start; a < r.End && hits.Count < limit; a += Chunk)
            {
                int length = (int)Math.Min((ulong)buf.Length, r.End - a);

                // A window the memory knows is zero holds no banner: a big guest with little touched memory is read
                // for its data, not for its size.
                if (sparse is not null && sparse.IsZero(a, (ulong)length))
                {
                    continue;
                }

                int n = memory.Read(a, buf.AsSpan(0, length));
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
