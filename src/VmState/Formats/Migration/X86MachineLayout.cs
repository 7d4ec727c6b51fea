using System.Buffers.Binary;
using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>
/// Rebuilds where each RAM block of an x86 "pc" (i440fx) or "q35" machine sits in guest-physical address space.
/// The stream does not say (except under x-ignore-shared); QEMU places the blocks by machine rules
/// (QEMU 7.2 <c>hw/i386/pc_piix.c</c>, <c>pc_q35.c</c>, <c>pc.c</c>) and by PCI BARs programmed by the guest.
/// </summary>
internal static class X86MachineLayout
{
    private const ulong FourGiB = 1UL << 32;

    /// <summary>The machine family of a QEMU machine type name.</summary>
    public static string Family(string? machineType)
    {
        if (machineType is null)
        {
            return "unknown";
        }

        if (machineType.Contains("q35", StringComparison.Ordinal))
        {
            return "q35";
        }

        if (machineType.StartsWith("pc", StringComparison.Ordinal) || machineType.Contains("i440fx", StringComparison.Ordinal))
        {
            return "pc";
        }

        return "unknown";
    }

    /// <summary>
    /// The size of RAM below 4 GiB for main RAM of <paramref name="ramSize"/> bytes, with QEMU 7.2's defaults
    /// (max-ram-below-4g not set, gigabyte alignment on for i440fx machine types newer than 1.7).
    /// </summary>
    public static ulong BelowFourGiB(string family, ulong ramSize)
    {
        ulong lowmem;
        if (family == "q35")
        {
            // pc_q35.c: 2.75 GiB unless RAM reaches it, then 2 GiB.
            lowmem = ramSize >= 0xB0000000 ? 0x80000000 : 0xB0000000;
        }
        else
        {
            // pc_piix.c: max-ram-below-4g defaults to 3.5 GiB; with gigabyte_align it drops to 3 GiB when RAM reaches it.
            lowmem = 0xE0000000;
            if (ramSize >= lowmem)
            {
                lowmem = 0xC0000000;
            }
        }

        return ramSize >= lowmem ? lowmem : ramSize;
    }

    /// <summary>
    /// Computes the mappings of every block. Main RAM (<see cref="X86MainRam"/>: <c>pc.ram</c>, or the memory-backend
    /// blocks QEMU made it of) is split around the VGA window and the PCI hole; other blocks are placed by the
    /// stream's own address (x-ignore-shared), as the BIOS below 4 GiB, or at their device's PCI BAR. Blocks that
    /// are not mapped get an empty list.
    /// </summary>
    /// <param name="machineType">The stream's machine type ("pc-i440fx-7.2", "pc-q35-7.2").</param>
    /// <param name="blocks">The stream's RAM blocks.</param>
    /// <param name="devices">The stream's device sections (PCI config spaces, the RTC's CMOS).</param>
    /// <param name="warnings">Receives observations that do not stop the reading.</param>
    /// <param name="mainRam">The main RAM blocks in NUMA node order, when the caller knows them; null to work them out.</param>
    /// <exception cref="IO.VmStateFormatException">Main RAM cannot be told from the stream (see <see cref="X86MainRam.Resolve"/>).</exception>
    /// <exception cref="VmStateNotFoundException">A block named in <paramref name="mainRam"/> is not in the stream.</exception>
    public static IReadOnlyList<RamBlockInfo> Map(string? machineType, IReadOnlyList<RamBlock> blocks, IReadOnlyList<DeviceState> devices, List<string> warnings, IReadOnlyList<string>? mainRam = null)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        ArgumentNullException.ThrowIfNull(warnings);
        string family = Family(machineType);
        var result = new List<RamBlockInfo>(blocks.Count);
        X86MainRam? main = blocks.Count == 0 ? null : X86MainRam.Resolve(family, blocks, devices, mainRam, warnings);
        if (main is not null && family == "unknown")
        {
            warnings.Add($"machine type \"{machineType}\" is not pc or q35; main RAM is mapped at address 0 without the PCI hole");
        }

        foreach (RamBlock block in blocks)
        {
            var mappings = new List<BlockMapping>();
            if (main is not null && main.Blocks.Contains(block))
            {
                // Under x-ignore-shared a main RAM block's address is its offset in the RAM container, not where
                // the guest sees it: the split below applies all the same.
                mappings.AddRange(main.MappingsOf(block, family));
            }
            else if (block.GuestPhysicalAddress is ulong gpa)
            {
                mappings.Add(new BlockMapping(gpa, 0, block.Length));
            }
            else if (block.Name == "pc.bios")
            {
                // The BIOS image ends at 4 GiB (pc_sysfw.c / x86_bios_rom_init).
                mappings.Add(new BlockMapping(FourGiB - block.Length, 0, block.Length));
            }
            else if (PciBarAddress(block.Name, devices) is ulong bar)
            {
                mappings.Add(new BlockMapping(bar, 0, block.Length));
            }
            else if (X86MainRam.IsBackendBlock(block.Name))
            {
                // A memory backend that is not main RAM: a pc-dimm or nvdimm, whose address is a device property
                // the stream does not carry.
                warnings.Add($"RAM block \"{block.Name}\" is a memory backend outside main RAM (a memory device?) and the snapshot does not say where it is mapped; its contents are not in guest-physical memory");
            }

            result.Add(new RamBlockInfo(block.Name, block.Length, mappings, block.DataPages, block.ZeroPages));
        }

        return result;
    }

    /// <summary>
    /// For a block of a PCI device ("0000:00:02.0/vga.vram", "0000:00:03.0/e1000.rom"), the address the guest
    /// programmed into the matching BAR: BAR0 for video RAM, the expansion ROM BAR for ROMs; null when the BAR
    /// is not enabled or the device state is not found.
    /// </summary>
    public static ulong? PciBarAddress(string blockName, IReadOnlyList<DeviceState> devices)
    {
        int slash = blockName.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0)
        {
            return null;
        }

        string pciAddress = blockName[..(slash + 1)];
        foreach (DeviceState d in devices)
        {
            if (!d.IdStr.StartsWith(pciAddress, StringComparison.Ordinal))
            {
                continue;
            }

            DeviceField? config = DeviceFieldSearch.FindByType(d, "pci config");
            if (config?.Bytes is not { Length: >= 0x40 } cfg)
            {
                continue;
            }

            ushort command = BinaryPrimitives.ReadUInt16LittleEndian(cfg.AsSpan(0x04));
            bool memoryEnabled = (command & 0x2) != 0;
            if (!memoryEnabled)
            {
                return null;
            }

            if (blockName.EndsWith(".rom", StringComparison.Ordinal))
            {
                uint rom = BinaryPrimitives.ReadUInt32LittleEndian(cfg.AsSpan(0x30));
                return (rom & 1) != 0 ? rom & 0xFFFFF800 : null;
            }

            if (blockName.EndsWith(".vram", StringComparison.Ordinal))
            {
                uint bar0 = BinaryPrimitives.ReadUInt32LittleEndian(cfg.AsSpan(0x10));
                if ((bar0 & 1) != 0)
                {
                    return null;
                }

                ulong address = bar0 & 0xFFFFFFF0;
                if (((bar0 >> 1) & 3) == 2)
                {
                    address |= (ulong)BinaryPrimitives.ReadUInt32LittleEndian(cfg.AsSpan(0x14)) << 32;
                }

                return address == 0 ? null : address;
            }

            return null;
        }

        return null;
    }
}
