using System.Globalization;
using System.Text;

namespace VmState.Gdb;

/// <summary>The text forms of the remote protocol: hex numbers and byte strings, binary escapes, and client text made safe to log.</summary>
internal static class GdbText
{
    /// <summary>"ADDR,LENGTH" in hex.</summary>
    public static bool TryRange(ReadOnlySpan<char> text, out ulong address, out ulong length)
    {
        address = 0;
        length = 0;
        int comma = text.IndexOf(',');
        return comma >= 0 && TryHex(text[..comma], out address) && TryHex(text[(comma + 1)..], out length);
    }

    /// <summary>Hex digits only: no sign, no spaces, no 0x, at most 16 digits (64 bits).</summary>
    public static bool TryHex(ReadOnlySpan<char> text, out ulong value) =>
        ulong.TryParse(text, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);

    /// <summary>Bytes as two hex digits each; false for an odd length or a non-hex digit.</summary>
    public static bool TryFromHex(ReadOnlySpan<char> text, out byte[] bytes)
    {
        bytes = [];
        if (text.Length % 2 != 0)
        {
            return false;
        }

        byte[] result = new byte[text.Length / 2];
        if (Convert.FromHexString(text, result, out _, out int written) != System.Buffers.OperationStatus.Done || written != result.Length)
        {
            return false;
        }

        bytes = result;
        return true;
    }

    /// <summary>The binary-data escape of a reply (GDB manual, "Overview"): <c>#</c>, <c>$</c>, <c>}</c> and <c>*</c> become <c>}</c> and the character XOR 0x20.</summary>
    public static string Escape(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (char ch in text)
        {
            if (ch is '#' or '$' or '}' or '*')
            {
                sb.Append('}').Append((char)(ch ^ 0x20));
            }
            else
            {
                sb.Append(ch);
            }
        }

        return sb.ToString();
    }

    /// <summary>Client text made safe for the log (no control characters, bounded length).</summary>
    public static string Printable(string text)
    {
        var sb = new StringBuilder();
        foreach (char c in text.Length > 80 ? text[..80] : text)
        {
            sb.Append(c is < ' ' or > '~' ? '?' : c);
        }

        return text.Length > 80 ? sb.Append('…').ToString() : sb.ToString();
    }

    /// <summary>A packet as sent: <c>$payload#cs</c> with the two-digit checksum (bytes of the payload as Latin-1).</summary>
    public static byte[] Frame(string payload)
    {
        byte[] body = Encoding.Latin1.GetBytes(payload);
        byte sum = 0;
        foreach (byte b in body)
        {
            sum += b;
        }

        byte[] packet = new byte[body.Length + 4];
        packet[0] = (byte)'$';
        body.CopyTo(packet, 1);
        packet[^3] = (byte)'#';
        packet[^2] = (byte)"0123456789abcdef"[sum >> 4];
        packet[^1] = (byte)"0123456789abcdef"[sum & 15];
        return packet;
    }
}
