using VmState.Views;

namespace VmState.History;

/// <summary>A network device of the initial namespace as a capture's index keeps it.</summary>
/// <param name="Name">The interface name.</param>
/// <param name="IfIndex">Its ifindex.</param>
/// <param name="Mac">Its current MAC address (aa:bb:cc:dd:ee:ff).</param>
/// <param name="Flags">net_device->flags (IFF_UP is bit 0).</param>
/// <param name="Mtu">Its MTU.</param>
public sealed record HistoryNetDevice(string Name, int IfIndex, string Mac, uint Flags, uint Mtu)
{
    /// <summary>How a list of these is shown (the CLI's JSON, other front ends).</summary>
    public static ListView<HistoryNetDevice> View { get; } = new(
        [
            new("name", FieldKind.Text, n => n.Name),
            new("ifIndex", FieldKind.Integer, n => n.IfIndex),
            new("mac", FieldKind.Text, n => n.Mac),
            new("flags", FieldKind.Integer, n => n.Flags),
            new("mtu", FieldKind.Integer, n => n.Mtu),
        ],
        [new("NAME", -16, n => n.Name), new("IFINDEX", 7, n => n.IfIndex.ToString(System.Globalization.CultureInfo.InvariantCulture)), new("MAC", -17, n => n.Mac), new("MTU", 6, n => n.Mtu.ToString(System.Globalization.CultureInfo.InvariantCulture))]);
}
