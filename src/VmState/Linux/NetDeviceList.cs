using VmState.Linux.Btf;

namespace VmState.Linux;

/// <summary>The guest's network devices: <c>init_net.dev_base_head</c>, linked through <c>net_device.dev_list</c>.</summary>
public static class NetDeviceList
{
    /// <summary>The devices of the initial network namespace, in list order (loopback first).</summary>
    /// <exception cref="KernelDataException">A corrupt list or unreadable device.</exception>
    public static IReadOnlyList<LinuxNetDevice> Read(LinuxKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var devices = new List<LinuxNetDevice>();
        KernelObject head = kernel.Object("init_net", "struct net").Member("dev_base_head");
        foreach (KernelObject d in kernel.ListForEachEntry(head, "struct net_device", "dev_list"))
        {
            int addrLen = (int)Math.Min(d.Member("addr_len").ToUInt64(), 32);
            KernelObject devAddr = d.Member("dev_addr");

            // Linux 5.17 made dev_addr a const pointer into dev_addr_list; before, it was an array in net_device.
            ulong devAddrAt = kernel.Types.Resolve(devAddr.TypeId).Kind == BtfKind.Pointer ? devAddr.ToUInt64() : devAddr.Address;
            ulong permAt = d.Member("perm_addr").Address;
            devices.Add(new LinuxNetDevice(
                d.Member("name").ReadString(16),
                (int)d.Member("ifindex").ToInt64(),
                Format(kernel, devAddrAt, addrLen),
                Format(kernel, permAt, addrLen),
                (uint)d.Member("flags").ToUInt64(),
                (uint)d.Member("mtu").ToUInt64(),
                d.Address,
                devAddrAt,
                permAt));
        }

        return devices;
    }

    private static string Format(LinuxKernel kernel, ulong address, int length)
    {
        if (address == 0 || length == 0)
        {
            return string.Empty;
        }

        byte[] b = new byte[length];
        kernel.ReadExactly(address, b, "net_device address");
        return string.Join(':', b.Select(x => x.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));
    }
}
