using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>
/// Where the RAM blocks of QEMU's AArch64 "virt" machine sit in guest-physical address space (QEMU 7.2
/// <c>hw/arm/virt.c</c>, <c>base_memmap</c>): main RAM ("mach-virt.ram", or the memory backend named by
/// <c>-machine memory-backend=</c>) from 0x4000_0000 (1 GiB) up. The two flash blocks ("virt.flash0/1") are ROM
/// devices, not RAM: QEMU's dump-guest-memory leaves them out, and so does this layout.
/// </summary>
internal static class Arm64VirtLayout
{
    /// <summary>VIRT_MEM: the base of RAM.</summary>
    public const ulong RamBase = 0x4000_0000UL;

    /// <summary>True for a machine type of the virt family ("virt", "virt-7.2").</summary>
    public static bool IsVirt(string? machineType) =>
        machineType is not null && (machineType == "virt" || machineType.StartsWith("virt-", StringComparison.Ordinal));

    /// <summary>Maps the blocks; <paramref name="mainRam"/> names the main RAM blocks when the caller knows them.</summary>
    /// <exception cref="VmStateNotFoundException">A block named in <paramref name="mainRam"/> is not in the stream.</exception>
    public static IReadOnlyList<RamBlockInfo> Map(string? machineType, IReadOnlyList<RamBlock> blocks, List<string> warnings, IReadOnlyList<string>? mainRam)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        ArgumentNullException.ThrowIfNull(warnings);
        if (!IsVirt(machineType))
        {
            warnings.Add($"machine type \"{machineType}\" is not the AArch64 virt machine; main RAM is mapped at 0x40000000 as virt maps it");
        }

        var main = new List<RamBlock>();
        if (mainRam is not null)
        {
            foreach (string name in mainRam)
            {
                main.Add(blocks.FirstOrDefault(b => b.Name == name) ?? throw new VmStateNotFoundException(VmStateObjectKind.RamBlock, name, $"no RAM block \"{name}\" in the snapshot (it has {string.Join(", ", blocks.Select(b => $"\"{b.Name}\""))})"));
            }
        }
        else if (blocks.FirstOrDefault(b => b.Name == "mach-virt.ram") is RamBlock machRam)
        {
            main.Add(machRam);
        }
        else
        {
            // -machine memory-backend=ID: the block is named after the backend (QEMU's object id, no slash, no "virt.").
            main.AddRange(blocks.Where(b => !b.Name.Contains('/', StringComparison.Ordinal) && !b.Name.StartsWith("virt.", StringComparison.Ordinal)));
            if (main.Count != 1)
            {
                warnings.Add($"main RAM of the virt machine could not be told ({main.Count} candidate blocks); no RAM is mapped (give --main-ram)");
                main.Clear();
            }
        }

        var result = new List<RamBlockInfo>(blocks.Count);
        ulong next = RamBase;
        foreach (RamBlock block in blocks)
        {
            var mappings = new List<BlockMapping>();
            int at = main.IndexOf(block);
            if (at >= 0)
            {
                // Several main blocks (NUMA nodes) follow each other in the order given.
                ulong start = RamBase;
                for (int i = 0; i < at; i++)
                {
                    start += main[i].Length;
                }

                mappings.Add(new BlockMapping(start, 0, block.Length));
                next = Math.Max(next, start + block.Length);
            }
            else if (block.GuestPhysicalAddress is ulong gpa && !block.Name.StartsWith("virt.flash", StringComparison.Ordinal))
            {
                mappings.Add(new BlockMapping(gpa, 0, block.Length));
            }

            result.Add(new RamBlockInfo(block.Name, block.Length, mappings, block.DataPages, block.ZeroPages));
        }

        return result;
    }
}
