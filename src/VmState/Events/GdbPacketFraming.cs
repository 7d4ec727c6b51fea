using System.Globalization;
using System.Text;

namespace VmState.Events;

/// <summary>
/// Finds GDB remote protocol packets (<c>$payload#xx</c>) in bytes received from a stub: acknowledgements
/// (<c>+</c>, <c>-</c>) and other bytes between packets are skipped, a packet with a wrong checksum is dropped.
/// Used on bytes from the network, so it never throws.
/// </summary>
public static class GdbPacketFraming
{
    /// <summary>
    /// Looks for one whole packet at the start of <paramref name="data"/>. Returns 1 with the payload when one was
    /// found, 0 when more bytes are needed. <paramref name="consumed"/> is how many bytes can be dropped (noise,
    /// a bad packet, or the packet returned).
    /// </summary>
    public static int TryTake(ReadOnlySpan<byte> data, out string? payload, out int consumed)
    {
        payload = null;
        consumed = 0;
        while (true)
        {
            int dollar = data[consumed..].IndexOf((byte)'$');
            if (dollar < 0)
            {
                consumed = data.Length;
                return 0;
            }

            consumed += dollar;
            ReadOnlySpan<byte> packet = data[consumed..];
            int hash = packet.IndexOf((byte)'#');
            if (hash < 0 || packet.Length < hash + 3)
            {
                return 0;
            }

            ReadOnlySpan<byte> body = packet[1..hash];
            byte sum = 0;
            foreach (byte b in body)
            {
                sum += b;
            }

            bool ok = byte.TryParse(Encoding.ASCII.GetString(packet.Slice(hash + 1, 2)), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out byte expected)
                && expected == sum && body.IndexOf((byte)'$') < 0;
            if (!ok)
            {
                // A corrupt packet (or a '$' inside it, which means the first one was cut): drop the '$' and look again.
                consumed += 1;
                continue;
            }

            payload = Encoding.ASCII.GetString(body);
            consumed += hash + 3;
            return 1;
        }
    }
}
