using System.Globalization;
using VmState.IO;
using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>
/// The machine's main RAM as QEMU 7.2 builds it for x86: one RAM block (<c>pc.ram</c> with <c>-m</c> alone, or the
/// backend named by <c>-machine memory-backend=ID</c>), or the blocks of the NUMA nodes' <c>memdev</c> backends
/// concatenated in node order (<c>hw/core/numa.c</c> numa_init_memdev_container); <c>pc_memory_init</c>
/// (<c>hw/i386/pc.c</c>) then maps the first <see cref="BelowFourGiB"/> bytes at 0 and the rest at 4 GiB.
/// </summary>
/// <remarks>
/// A memory backend's RAMBlock is named by the backend's id (<c>backends/hostmem.c</c>
/// host_memory_backend_get_name; <c>/objects/ID</c> for file and memfd backends on machine types up to 4.0). The
/// stream lists blocks by size, not in node order, and does not say which blocks are main RAM. What it does
/// record is the RAM size QEMU put into the RTC's CMOS (<c>pc_cmos_init</c>: bytes 0x30/0x31 and 0x34/0x35 below
/// 4 GiB, 0x5b–0x5d above it), so the main RAM is the one set of backend blocks whose sizes add up to that, and
/// the below-4G size is the one QEMU computed (max-ram-below-4g included). The node order comes from the
/// addresses the stream gives under x-ignore-shared (a node's offset in the RAM container), else from names
/// that number the nodes (<c>ram-node0</c>, <c>ram-node1</c>: libvirt's ids). When neither settles it, the
/// caller must name the blocks (<see cref="Resolve"/>'s <c>requested</c>); nothing is guessed.
/// </remarks>
internal sealed class X86MainRam
{
    /// <summary>The option that names main RAM blocks, quoted in errors (the CLI's spelling).</summary>
    public const string OptionHint = "--main-ram NAME[,NAME...] (in NUMA node order; library: SnapshotOpenOptions.MainRam)";

    private const ulong FourGiB = 1UL << 32;
    private const ulong MiB = 1UL << 20;
    private const int MaxCandidates = 16;

    private X86MainRam(IReadOnlyList<RamBlock> blocks, ulong belowFourGiB)
    {
        Blocks = blocks;
        BelowFourGiB = belowFourGiB;
        ulong size = 0;
        foreach (RamBlock b in blocks)
        {
            size += b.Length;
        }

        Size = size;
    }

    /// <summary>The blocks in the order QEMU concatenates them (NUMA node order).</summary>
    public IReadOnlyList<RamBlock> Blocks { get; }

    /// <summary>The machine's RAM size: the blocks' lengths added up.</summary>
    public ulong Size { get; }

    /// <summary>How much of the concatenated RAM is mapped below 4 GiB (the rest starts at 4 GiB).</summary>
    public ulong BelowFourGiB { get; }

    /// <summary>
    /// Finds the main RAM blocks and their order: the blocks in <paramref name="requested"/> when given, else
    /// <c>pc.ram</c>, else the memory-backend blocks whose sizes add up to the RAM size recorded in CMOS.
    /// </summary>
    /// <param name="family">"pc", "q35" or "unknown" (<see cref="X86MachineLayout.Family"/>).</param>
    /// <param name="blocks">Every RAM block of the stream.</param>
    /// <param name="devices">The device sections (the RTC's CMOS is read from them).</param>
    /// <param name="requested">Main RAM block names in NUMA node order, or null to work them out.</param>
    /// <param name="warnings">Receives observations that do not stop the reading.</param>
    /// <exception cref="VmStateFormatException">Main RAM cannot be told from the stream; the message lists the
    /// candidate blocks and names the option that settles it.</exception>
    /// <exception cref="VmStateNotFoundException">A requested block is not in the stream.</exception>
    public static X86MainRam Resolve(string family, IReadOnlyList<RamBlock> blocks, IReadOnlyList<DeviceState> devices, IReadOnlyList<string>? requested, List<string> warnings)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        ArgumentNullException.ThrowIfNull(warnings);
        if (blocks.Count == 0)
        {
            throw new ArgumentException("there are no RAM blocks", nameof(blocks));
        }

        (ulong Below, ulong Above)? cmos = ReadCmosMemory(devices);
        long listOffset = blocks[0].ListOffset;
        IReadOnlyList<RamBlock> main;
        if (requested is { Count: > 0 })
        {
            main = Requested(blocks, requested);
        }
        else if (Find(blocks, "pc.ram") is RamBlock pcRam)
        {
            main = [pcRam];
        }
        else
        {
            main = Discover(blocks, cmos, listOffset);
        }

        ulong size = 0;
        foreach (RamBlock b in main)
        {
            size += b.Length;
        }

        ulong below;
        if (cmos is (ulong cb, ulong ca) && Consistent(cb, ca, size))
        {
            below = cb;
        }
        else
        {
            below = X86MachineLayout.BelowFourGiB(family, size);
            if (cmos is (ulong b, ulong a) && family != "unknown")
            {
                warnings.Add($"the RAM size in CMOS ({SizeText(b)} below 4 GiB, {SizeText(a)} above) does not match the main RAM ({SizeText(size)} in {Names(main)}); it is split by QEMU 7.2's default rule");
            }
        }

        return new X86MainRam(main, below);
    }

    /// <summary>
    /// True for a block that a memory backend could have made: not owned by a device (no "device-path/" prefix,
    /// or the "/objects/ID" canonical path), and not one of the firmware or legacy device blocks QEMU 7.2 names
    /// without a device path (pc.bios, pc.rom, isa-bios, ISA VGA, pflash, vmware-svga FIFO, Hyper-V SynIC pages).
    /// </summary>
    public static bool IsBackendBlock(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.StartsWith("/objects/", StringComparison.Ordinal))
        {
            return name.Length > "/objects/".Length && name.IndexOf('/', "/objects/".Length) < 0;
        }

        if (name.Length == 0 || name.Contains('/', StringComparison.Ordinal))
        {
            return false;
        }

        return name is not ("pc.bios" or "pc.rom" or "isa-bios" or "vga.vram" or "vga.rom" or "vmsvga.fifo" or "xen.ram")
            && !name.StartsWith("system.flash", StringComparison.Ordinal)
            && !name.StartsWith("synic-", StringComparison.Ordinal);
    }

    /// <summary>
    /// The RAM sizes below and above 4 GiB that QEMU wrote into the RTC's CMOS (QEMU 7.2 <c>hw/i386/pc.c</c>
    /// pc_cmos_init), from the "mc146818rtc" section's cmos_data; null when there is no such section or the values
    /// cannot be read back (below 4 GiB is exact only above 1 MiB; above 4 GiB is kept modulo 1 TiB).
    /// </summary>
    public static (ulong Below, ulong Above)? ReadCmosMemory(IReadOnlyList<DeviceState> devices)
    {
        ArgumentNullException.ThrowIfNull(devices);
        foreach (DeviceState d in devices)
        {
            if (d.IdStr != "mc146818rtc" || d.State?.Field("cmos_data")?.Bytes is not { Length: >= 0x5e } cmos)
            {
                continue;
            }

            // 0x34/0x35: (below - 16 MiB) / 64 KiB; 0x30/0x31: (below - 1 MiB) / 1 KiB, both capped at 65535.
            uint over16M = (uint)(cmos[0x34] | (cmos[0x35] << 8));
            uint over1M = (uint)(cmos[0x30] | (cmos[0x31] << 8));
            ulong below;
            if (over16M is > 0 and < 65535)
            {
                below = (16 * MiB) + ((ulong)over16M << 16);
            }
            else if (over16M == 0 && over1M is > 0 and < 65535)
            {
                below = MiB + ((ulong)over1M << 10);
            }
            else
            {
                return null;
            }

            ulong above = (ulong)(cmos[0x5b] | (cmos[0x5c] << 8) | (cmos[0x5d] << 16)) << 16;
            return (below, above);
        }

        return null;
    }

    /// <summary>
    /// Where each part of the concatenated main RAM is in guest-physical address space: [0, 640 KiB) and
    /// [768 KiB, below-4G) at their own addresses (0xA0000–0xBFFFF is the VGA window), the rest from 4 GiB; for an
    /// unknown machine family, all of it at 0.
    /// </summary>
    public IReadOnlyList<BlockMapping> MappingsOf(RamBlock block, string family)
    {
        ArgumentNullException.ThrowIfNull(block);
        ulong start = 0;
        int i = 0;
        for (; i < Blocks.Count && !ReferenceEquals(Blocks[i], block); i++)
        {
            start += Blocks[i].Length;
        }

        if (i == Blocks.Count)
        {
            throw new ArgumentException($"RAM block \"{block.Name}\" is not part of main RAM", nameof(block));
        }

        ulong end = start + block.Length;
        var result = new List<BlockMapping>();
        if (family == "unknown")
        {
            result.Add(new BlockMapping(start, 0, block.Length));
            return result;
        }

        const ulong vgaStart = 0xA0000;
        const ulong vgaEnd = 0xC0000;
        Add(result, start, end, 0, Math.Min(BelowFourGiB, vgaStart), 0);
        Add(result, start, end, vgaEnd, BelowFourGiB, vgaEnd);
        Add(result, start, end, BelowFourGiB, Size, FourGiB);
        return result;
    }

    private static void Add(List<BlockMapping> result, ulong blockStart, ulong blockEnd, ulong from, ulong to, ulong gpa)
    {
        ulong lo = Math.Max(blockStart, from);
        ulong hi = Math.Min(blockEnd, to);
        if (lo < hi)
        {
            result.Add(new BlockMapping(gpa + (lo - from), lo - blockStart, hi - lo));
        }
    }

    private static bool Consistent(ulong below, ulong above, ulong size)
    {
        if (below > size || below > FourGiB)
        {
            return false;
        }

        ulong rest = size - below;
        return (rest & 0xFFFF) == 0 && ((rest >> 16) & 0xFFFFFF) == above >> 16;
    }

    private static IReadOnlyList<RamBlock> Requested(IReadOnlyList<RamBlock> blocks, IReadOnlyList<string> requested)
    {
        var main = new List<RamBlock>(requested.Count);
        foreach (string name in requested)
        {
            RamBlock block = Find(blocks, name) ?? throw new VmStateNotFoundException(VmStateObjectKind.RamBlock, name,
                $"main RAM block \"{name}\" is not in the snapshot; its RAM blocks are {Names(blocks)}");
            if (main.Contains(block))
            {
                throw new ArgumentException($"main RAM block \"{name}\" is named twice", nameof(requested));
            }

            main.Add(block);
        }

        return main;
    }

    private static IReadOnlyList<RamBlock> Discover(IReadOnlyList<RamBlock> blocks, (ulong Below, ulong Above)? cmos, long listOffset)
    {
        const string S = "RAM block list (MEM_SIZE)";
        var candidates = new List<RamBlock>();
        foreach (RamBlock b in blocks)
        {
            if (IsBackendBlock(b.Name))
            {
                candidates.Add(b);
            }
        }

        string hint = $"give the main RAM blocks with {OptionHint}";
        if (candidates.Count == 0)
        {
            throw new VmStateFormatException(listOffset, S, $"no RAM block can be the machine's main RAM (no pc.ram and no memory-backend block among {Names(blocks)}); {hint}");
        }

        List<RamBlock> main;
        if (cmos is (ulong below, ulong above))
        {
            main = SubsetWithSize(candidates, below, above, listOffset, hint);
        }
        else if (candidates.Count == 1)
        {
            main = candidates;
        }
        else
        {
            throw new VmStateFormatException(listOffset, S, $"the snapshot records no RAM size (no RTC CMOS), so which of {Names(candidates)} are main RAM cannot be told; {hint}");
        }

        return main.Count == 1 ? main : NodeOrder(main, listOffset, hint);
    }

    private static List<RamBlock> SubsetWithSize(List<RamBlock> candidates, ulong below, ulong above, long listOffset, string hint)
    {
        const string S = "RAM block list (MEM_SIZE)";
        string cmosText = above == 0 ? SizeText(below) : $"{SizeText(below)} below 4 GiB + {SizeText(above)} above";
        if (candidates.Count > MaxCandidates)
        {
            throw new VmStateFormatException(listOffset, S, $"{candidates.Count} memory-backend blocks are too many to tell which make the RAM size in CMOS ({cmosText}); {hint}");
        }

        List<RamBlock>? found = null;
        int matches = 0;
        for (int mask = 1; mask < 1 << candidates.Count; mask++)
        {
            ulong sum = 0;
            for (int i = 0; i < candidates.Count; i++)
            {
                if ((mask & (1 << i)) != 0)
                {
                    sum += candidates[i].Length;
                }
            }

            if (!Consistent(below, above, sum))
            {
                continue;
            }

            matches++;
            found = [];
            for (int i = 0; i < candidates.Count; i++)
            {
                if ((mask & (1 << i)) != 0)
                {
                    found.Add(candidates[i]);
                }
            }
        }

        return matches switch
        {
            1 => found!,
            0 => throw new VmStateFormatException(listOffset, S, $"no set of the memory-backend blocks {Names(candidates)} adds up to the RAM size in CMOS ({cmosText}); {hint}"),
            _ => throw new VmStateFormatException(listOffset, S, $"{matches} different sets of the memory-backend blocks {Names(candidates)} add up to the RAM size in CMOS ({cmosText}), so main RAM cannot be told from memory devices (pc-dimm, nvdimm); {hint}"),
        };
    }

    private static List<RamBlock> NodeOrder(List<RamBlock> main, long listOffset, string hint)
    {
        // x-ignore-shared: each node's backend is a subregion of the RAM container at its offset (mr->addr).
        bool allAddressed = main.TrueForAll(b => b.GuestPhysicalAddress is not null);
        if (allAddressed)
        {
            var byAddress = main.OrderBy(b => b.GuestPhysicalAddress!.Value).ToList();
            ulong offset = 0;
            bool tiles = true;
            foreach (RamBlock b in byAddress)
            {
                tiles &= b.GuestPhysicalAddress == offset;
                offset += b.Length;
            }

            if (tiles)
            {
                return byAddress;
            }
        }

        // Ids that number the nodes with one prefix (libvirt's ram-node0, ram-node1, ...).
        var numbered = new List<(ulong Number, RamBlock Block)>();
        string? prefix = null;
        foreach (RamBlock b in main)
        {
            string id = b.Name.StartsWith("/objects/", StringComparison.Ordinal) ? b.Name["/objects/".Length..] : b.Name;
            int digits = id.Length;
            while (digits > 0 && char.IsAsciiDigit(id[digits - 1]))
            {
                digits--;
            }

            if (digits == id.Length || id.Length - digits > 9 || (prefix is not null && prefix != id[..digits]))
            {
                numbered = null;
                break;
            }

            prefix = id[..digits];
            numbered.Add((ulong.Parse(id[digits..], NumberStyles.None, CultureInfo.InvariantCulture), b));
        }

        if (numbered is not null && numbered.Select(n => n.Number).Distinct().Count() == numbered.Count)
        {
            return numbered.OrderBy(n => n.Number).Select(n => n.Block).ToList();
        }

        throw new VmStateFormatException(listOffset, "RAM block list (MEM_SIZE)", $"main RAM is the NUMA node backends {Names(main)}, but their node order is not in the snapshot; {hint}");
    }

    private static RamBlock? Find(IReadOnlyList<RamBlock> blocks, string name)
    {
        foreach (RamBlock b in blocks)
        {
            if (b.Name == name)
            {
                return b;
            }
        }

        return null;
    }

    private static string Names(IEnumerable<RamBlock> blocks) => string.Join(", ", blocks.Select(b => $"\"{b.Name}\" ({SizeText(b.Length)})"));

    private static string SizeText(ulong bytes) => bytes % MiB == 0 ? $"{bytes / MiB} MiB" : bytes % 1024 == 0 ? $"{bytes / 1024} KiB" : $"0x{bytes:x} bytes";
}
