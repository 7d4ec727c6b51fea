using System.Globalization;
using System.Text;

namespace VmState.Cli.Commands;

/// <summary>Number formatting for terminal output.</summary>
internal static class Hex
{
    public static string Of(ulong v) => "0x" + v.ToString("x", CultureInfo.InvariantCulture);

    public static string Size(ulong bytes) => bytes switch
    {
        >= 1UL << 30 when bytes % (1UL << 30) == 0 => $"{bytes >> 30} GiB",
        >= 1UL << 20 when bytes % (1UL << 20) == 0 => $"{bytes >> 20} MiB",
        >= 1UL << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1UL << 30):F1} GiB"),
        >= 1UL << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1UL << 20):F1} MiB"),
        >= 1UL << 10 when bytes % (1UL << 10) == 0 => $"{bytes >> 10} KiB",
        _ => bytes.ToString(CultureInfo.InvariantCulture) + " B",
    };

    /// <summary>
    /// Sets <paramref name="line"/> to the hexdump -C style line of up to 16 bytes of <paramref name="data"/> from
    /// <paramref name="offset"/>: the address, the bytes in hex (a gap after the eighth), and the printable ones.
    /// </summary>
    public static void DumpLine(StringBuilder line, ulong address, ReadOnlySpan<byte> data, int offset)
    {
        line.Clear();
        line.Append(CultureInfo.InvariantCulture, $"{address + (ulong)offset:x16}  ");
        for (int j = 0; j < 16; j++)
        {
            line.Append(offset + j < data.Length ? data[offset + j].ToString("x2", CultureInfo.InvariantCulture) + " " : "   ");
            if (j == 7)
            {
                line.Append(' ');
            }
        }

        line.Append(" |");
        for (int j = 0; j < 16 && offset + j < data.Length; j++)
        {
            byte b = data[offset + j];
            line.Append(b is >= 0x20 and < 0x7f ? (char)b : '.');
        }

        line.Append('|');
    }
}
