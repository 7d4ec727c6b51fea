using System.Globalization;

namespace VmState.Formats.Migration.Devices;

/// <summary>Formats and parses MAC addresses as aa:bb:cc:dd:ee:ff.</summary>
public static class MacAddress
{
    /// <summary>Formats six bytes.</summary>
    public static string Format(ReadOnlySpan<byte> mac) =>
        string.Create(CultureInfo.InvariantCulture, $"{mac[0]:x2}:{mac[1]:x2}:{mac[2]:x2}:{mac[3]:x2}:{mac[4]:x2}:{mac[5]:x2}");

    /// <summary>Parses "aa:bb:cc:dd:ee:ff" (or with '-'); throws <see cref="FormatException"/> naming the input.</summary>
    public static byte[] Parse(string text)
    {
        string[] parts = text.Split(':', '-');
        if (parts.Length != 6)
        {
            throw new FormatException($"\"{text}\" is not a MAC address (expected six hex bytes like 52:54:00:12:34:56)");
        }

        byte[] mac = new byte[6];
        for (int i = 0; i < 6; i++)
        {
            if (!byte.TryParse(parts[i], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out mac[i]) || parts[i].Length != 2)
            {
                throw new FormatException($"\"{text}\" is not a MAC address: byte {i + 1} \"{parts[i]}\" is not two hex digits");
            }
        }

        return mac;
    }
}
