using VmState.Linux;

namespace VmState.Editing;

/// <summary>
/// Changes a NIC's MAC address everywhere a resumed guest keeps it: in the device's state (<see cref="SnapshotEditor.SetMac"/>:
/// e1000 EEPROM and registers, virtio-net config) and in the guest Linux kernel's copy, the <c>net_device</c> whose
/// address is the device's old MAC (<c>dev_addr</c>, what the stack and <c>/sys/class/net/*/address</c> use, and
/// <c>perm_addr</c>).
/// </summary>
public static class GuestMacEdit
{
    /// <summary>
    /// Sets <paramref name="nic"/>'s MAC to <paramref name="mac"/> in the device and in the guest kernel's
    /// <c>net_device</c>, and returns that net_device (as it was before the edit). The device's old MAC tells which
    /// net_device it is; the kernel is located (<see cref="LinuxGuest.Kernel"/>) only after the device edit was accepted.
    /// </summary>
    /// <exception cref="VmStateNotFoundException">No such device (<see cref="VmStateObjectKind.Device"/>).</exception>
    /// <exception cref="InvalidEditException">
    /// The device's MAC cannot be decoded, no guest network device (or more than one) has it, or its address bytes are not mapped.
    /// </exception>
    /// <exception cref="KernelDataException">The guest kernel was not found, or its device list is corrupt.</exception>
    public static LinuxNetDevice SetMac(SnapshotEditor editor, LinuxGuest guest, string nic, byte[] mac)
    {
        ArgumentNullException.ThrowIfNull(editor);
        ArgumentNullException.ThrowIfNull(guest);
        ArgumentNullException.ThrowIfNull(nic);
        ArgumentNullException.ThrowIfNull(mac);
        string? oldMac = editor.FindDevice(nic).Decoded.GetValueOrDefault("mac");
        editor.SetMac(nic, mac);
        if (oldMac is null)
        {
            throw new InvalidEditException(nic, $"the MAC of {nic} could not be decoded, so its net_device cannot be told apart");
        }

        LinuxKernel kernel = guest.Kernel;
        IReadOnlyList<LinuxNetDevice> devices = guest.NetDevices();
        LinuxNetDevice[] holders = [.. devices.Where(d => d.Mac == oldMac)];
        if (holders.Length != 1)
        {
            throw new InvalidEditException(nic, holders.Length == 0
                ? $"no guest network device has {nic}'s address {oldMac} (the guest has: {string.Join(", ", devices.Select(d => $"{d.Name} {d.Mac}"))})"
                : $"{holders.Length} guest network devices have {nic}'s address {oldMac} ({string.Join(", ", holders.Select(d => d.Name))}), so its net_device cannot be told apart");
        }

        LinuxNetDevice dev = holders[0];
        foreach (ulong va in new[] { dev.DevAddrAddress, dev.PermAddrAddress })
        {
            // AArch64: the kernel's own tables (swapper_pg_dir); net_devices live in the linear map.
            bool mapped = kernel.Arm64AddressSpace is Arch.Arm64.Arm64AddressSpace arm64 ? arm64.TryTranslate(va, out ulong pa) : kernel.AddressSpace.TryTranslate(va, out pa);
            if (!mapped)
            {
                throw new InvalidEditException(va, nic, $"{dev.Name}'s address bytes at 0x{va:x} are not mapped");
            }

            editor.WritePhysical(pa, mac);
        }

        return dev;
    }
}
