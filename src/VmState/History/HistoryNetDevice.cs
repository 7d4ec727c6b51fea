namespace VmState.History;

/// <summary>A network device of the initial namespace as a capture's index keeps it.</summary>
/// <param name="Name">The interface name.</param>
/// <param name="IfIndex">Its ifindex.</param>
/// <param name="Mac">Its current MAC address (aa:bb:cc:dd:ee:ff).</param>
/// <param name="Flags">net_device->flags (IFF_UP is bit 0).</param>
/// <param name="Mtu">Its MTU.</param>
public sealed record HistoryNetDevice(string Name, int IfIndex, string Mac, uint Flags, uint Mtu);
