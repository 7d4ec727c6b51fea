using System.Buffers.Binary;
using VmState.Machine;

namespace VmState.Formats.Migration.Devices;

/// <summary>
/// Decodes values users look for in well-known devices (NIC MAC addresses, run state) into
/// <see cref="DeviceState.Decoded"/>.
/// </summary>
public static class WellKnownDevices
{
    /// <summary>Adds decoded values to every device it knows.</summary>
    public static void Annotate(IReadOnlyList<DeviceState> devices)
    {
        foreach (DeviceState d in devices)
        {
            if (d.State is null)
            {
                continue;
            }

            try
            {
                if (d.IdStr.EndsWith("/e1000", StringComparison.Ordinal))
                {
                    AnnotateE1000(d);
                }
                else if (d.IdStr.EndsWith("/virtio-net", StringComparison.Ordinal))
                {
                    AnnotateVirtioNet(d);
                }
                else if (d.IdStr == "globalstate" && d.State.Field("runstate")?.Bytes is byte[] rs)
                {
                    int len = (int)Math.Min(d.State.Field("size")?.Integer ?? 0, (ulong)rs.Length);
                    d.Decoded["runstate"] = System.Text.Encoding.ASCII.GetString(rs, 0, len).TrimEnd('\0');
                }
            }
            catch (Exception e) when (e is FormatException or IO.VmStateFormatException)
            {
                d.Decoded["decode-error"] = e.Message;
            }
        }
    }

    /// <summary>
    /// e1000 (QEMU 7.2 <c>hw/net/e1000.c</c>): the MAC as the guest sees it is in the receive-address registers
    /// RAL0/RAH0 (<c>mac_reg[0]</c> elements 0 and 1, or the full_mac_state subsection at RA = 0x5400/4), and in
    /// EEPROM words 0..2, which the driver reads at probe time.
    /// </summary>
    public static void AnnotateE1000(DeviceState d)
    {
        VmsdState s = d.State!;
        if (s.Field("eeprom_data")?.Elements is { Count: 64 } eeprom)
        {
            byte[] mac = new byte[6];
            for (int i = 0; i < 3; i++)
            {
                ushort w = (ushort)eeprom[i].Integer;
                mac[2 * i] = (byte)w;
                mac[(2 * i) + 1] = (byte)(w >> 8);
            }

            d.Decoded["eeprom-mac"] = MacAddress.Format(mac);
            uint sum = 0;
            foreach (DeviceField w in eeprom)
            {
                sum += (ushort)w.Integer;
            }

            d.Decoded["eeprom-checksum"] = (sum & 0xFFFF) == 0xBABA ? "valid" : $"invalid (sum 0x{sum & 0xFFFF:x4}, expected 0xbaba)";
        }

        uint? ral = null;
        uint? rah = null;
        if (s.Subsection("e1000/full_mac_state")?.Field("mac_reg")?.Elements is { Count: > 0x1501 } full)
        {
            // Loaded after the base fields, so it is what the device ends up with.
            ral = (uint)full[0x1500].Integer;
            rah = (uint)full[0x1501].Integer;
        }
        else if (s.Field("mac_reg[0]")?.Elements is { Count: >= 2 } ra)
        {
            ral = (uint)ra[0].Integer;
            rah = (uint)ra[1].Integer;
        }

        if (ral is uint l && rah is uint h)
        {
            Span<byte> mac = stackalloc byte[6];
            BinaryPrimitives.WriteUInt32LittleEndian(mac, l);
            mac[4] = (byte)h;
            mac[5] = (byte)(h >> 8);
            d.Decoded["mac"] = MacAddress.Format(mac);
            d.Decoded["mac-valid"] = (h & 0x80000000) != 0 ? "yes" : "no (RAH0.AV clear)";
        }
    }

    /// <summary>
    /// virtio-net over PCI (QEMU 7.2 <c>hw/virtio/virtio.c</c> virtio_save, <c>hw/virtio/virtio-pci.c</c>): the
    /// opaque "virtio" field holds the PCI device state, the MSI-X table, the common virtio state and the queues,
    /// then the "virtio-net-device" state whose first field is the MAC (n->mac, the authoritative copy).
    /// </summary>
    public static void AnnotateVirtioNet(DeviceState d)
    {
        if (FindVirtioNetMacOffset(d) is (int offset, byte[] bytes))
        {
            d.Decoded["mac"] = MacAddress.Format(bytes.AsSpan(offset, 6));
        }
    }

    /// <summary>
    /// Offset of the 6-byte MAC inside the bytes of a virtio-net device's "virtio" field, with those bytes; null when
    /// the layout does not parse.
    /// </summary>
    public static (int Offset, byte[] Bytes)? FindVirtioNetMacOffset(DeviceState d)
    {
        DeviceField? field = d.State?.Field("virtio");
        if (field?.Bytes is not byte[] b || b.Length < 300)
        {
            return null;
        }

        // PCIDevice vmsd: int32 version_id, 256-byte config, 4 x int32 irq state.
        int pos = 4;
        ReadOnlySpan<byte> config = b.AsSpan(pos, 256);
        pos += 256 + 16;
        int msixEntries = MsixTableSize(config);
        if (msixEntries > 0)
        {
            pos += (msixEntries * 16) + ((msixEntries + 7) / 8);
            pos += 2; // config_vector
        }

        pos += 1 + 1 + 2 + 4; // status, isr, queue_sel, guest_features (low 32 bits)
        if (pos + 4 > b.Length)
        {
            throw new FormatException($"virtio state of {d.IdStr} ends before its config length");
        }

        int configLength = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(pos));
        if (configLength is < 0 or > 4096)
        {
            throw new FormatException($"virtio state of {d.IdStr}: config length {configLength} at byte {pos} (expected 0-4096)");
        }

        pos += 4 + configLength;
        if (pos + 4 > b.Length)
        {
            throw new FormatException($"virtio state of {d.IdStr} ends before its queue count");
        }

        int queues = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(pos));
        if (queues is < 0 or > 1024)
        {
            throw new FormatException($"virtio state of {d.IdStr}: {queues} queues at byte {pos} (expected 0-1024)");
        }

        pos += 4;
        int perQueue = 4 + 8 + 2 + (msixEntries > 0 ? 2 : 0); // vring.num, desc, last_avail_idx, MSI-X vector
        pos += queues * perQueue;
        if (pos + 6 > b.Length)
        {
            throw new FormatException($"virtio state of {d.IdStr} ends before the virtio-net-device state");
        }

        return (pos, b);
    }

    /// <summary>
    /// Offset, inside the "virtio" field of a virtio-net device, of the MAC in the saved copy of the device's config
    /// space (struct virtio_net_config starts with the MAC), or null when the config copy is shorter than 6 bytes.
    /// </summary>
    public static int? FindVirtioNetConfigOffset(DeviceState d)
    {
        DeviceField? field = d.State?.Field("virtio");
        if (field?.Bytes is not byte[] b || b.Length < 300 || FindVirtioNetMacOffset(d) is null)
        {
            return null;
        }

        int pos = 4 + 256 + 16;
        int msixEntries = MsixTableSize(b.AsSpan(4, 256));
        if (msixEntries > 0)
        {
            pos += (msixEntries * 16) + ((msixEntries + 7) / 8) + 2;
        }

        pos += 1 + 1 + 2 + 4;
        int configLength = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(pos));
        return configLength >= 6 ? pos + 4 : null;
    }

    /// <summary>MSI-X table size from the MSI-X capability (id 0x11) of a PCI config space, or 0 when absent.</summary>
    public static int MsixTableSize(ReadOnlySpan<byte> config)
    {
        if ((config[0x06] & 0x10) == 0)
        {
            return 0;
        }

        int cap = config[0x34] & 0xFC;
        for (int guard = 0; cap >= 0x40 && cap < 0xFF && guard < 48; guard++)
        {
            if (config[cap] == 0x11)
            {
                ushort control = BinaryPrimitives.ReadUInt16LittleEndian(config[(cap + 2)..]);
                return (control & 0x7FF) + 1;
            }

            cap = config[cap + 1] & 0xFC;
        }

        return 0;
    }
}
