using System.Globalization;

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
}
