using System.Text.Json;

namespace VmState.Fork;

/// <summary>A NIC of a clone: the snapshot's device, the MAC it had there and the clone's own.</summary>
/// <param name="Device">The device's key in the snapshot (e.g. <c>0000:00:03.0/virtio-net</c>).</param>
/// <param name="Original">Its MAC in the snapshot.</param>
/// <param name="Mac">The clone's MAC (in the device, the guest kernel's net_device and the QEMU command line).</param>
public sealed record ForkMac(string Device, string Original, string Mac)
{
    /// <summary>Writes <paramref name="macs"/> as the JSON array <paramref name="name"/> (device, original, mac), as the clone's state file and <c>fork --list --json</c> show them.</summary>
    public static void WriteArray(Utf8JsonWriter w, string name, IEnumerable<ForkMac> macs)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(macs);
        w.WriteStartArray(name);
        foreach (ForkMac m in macs)
        {
            w.WriteStartObject();
            w.WriteString("device", m.Device);
            w.WriteString("original", m.Original);
            w.WriteString("mac", m.Mac);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }
}
