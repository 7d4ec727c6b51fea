using System.Buffers.Binary;
using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>
/// Rebuilds where each RAM block of an x86 "pc" (i440fx) or "q35" machine sits in guest-physical address space.
/// The stream does not say (except under x-ignore-shared); QEMU places the blocks by machine rules
/// (QEMU 7.2 <c>hw/i386/pc_piix.c</c>, <c>pc_q35.c</c>, <c>pc.c</c>) and by PCI BARs programmed by the guest.
/// </summary>
public static class X86MachineLayout
{
    private const ulong FourGiB = 1UL << 32;
    private const ulong VgaWindowStart = 0xA0000;
    private const ulong VgaWindowEnd = 0xC0000;

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

    /// <summary>Computes the mappings of every block. Blocks that are not mapped get an empty list.</summary>
    public static IReadOnlyList<RamBlockInfo> Map(string? machineType, IReadOnlyList<RamBlock> blocks, IReadOnlyList<DeviceState> devices, List<string> warnings)
    {
        string family = Family(machineType);
        var result = new List<RamBlockInfo>(blocks.Count);
        foreach (RamBlock block in blocks)
        {
            var mappings = new List<BlockMapping>();
            if (block.GuestPhysicalAddress is ulong gpa)
            {
                mappings.Add(new BlockMapping(gpa, 0, block.Length));
            }
            else if (block.Name == "pc.ram")
            {
                if (family == "unknown")
                {
                    warnings.Add($"machine type \"{machineType}\" is not pc or q35; pc.ram is mapped at address 0 without the PCI hole");
                    mappings.Add(new BlockMapping(0, 0, block.Length));
                }
                else
                {
                    ulong below = BelowFourGiB(family, block.Length);
                    // 0xA0000-0xBFFFF is the legacy VGA window (MMIO), not RAM.
                    mappings.Add(new BlockMapping(0, 0, Math.Min(below, VgaWindowStart)));
                    if (below > VgaWindowEnd)
                    {
                        mappings.Add(new BlockMapping(VgaWindowEnd, VgaWindowEnd, below - VgaWindowEnd));
                    }

                    if (block.Length > below)
                    {
                        mappings.Add(new BlockMapping(FourGiB, below, block.Length - below));
                    }
                }
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
