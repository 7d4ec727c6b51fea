using System.Globalization;

namespace VmState.Memory;

/// <summary>Parses addresses and lengths given as 0x-prefixed hex, plain decimal, or with a k/m/g suffix.</summary>
public static class AddressText
{
    /// <summary>
    /// Parses <paramref name="text"/>: <c>0x</c>-prefixed hex or decimal, <c>_</c> and <c>`</c> (WinDbg style) ignored,
    /// a decimal number may end in k, m or g (KiB, MiB, GiB).
    /// </summary>
    /// <param name="text">The text to parse.</param>
    /// <param name="what">What the number is, for the error message (e.g. "ADDR").</param>
    /// <exception cref="ArgumentException">Not a number, an unknown suffix, or larger than 2^64-1.</exception>
    public static ulong Parse(string text, string what)
    {
        ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim().Replace("_", string.Empty, StringComparison.Ordinal).Replace("`", string.Empty, StringComparison.Ordinal);
        ulong multiplier = 1;
        if (t.Length > 1 && char.IsLetter(t[^1]) && !t.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            multiplier = char.ToLowerInvariant(t[^1]) switch
            {
                'k' => 1UL << 10,
                'm' => 1UL << 20,
                'g' => 1UL << 30,
                _ => throw new ArgumentException($"{what} \"{text}\": unknown suffix '{t[^1]}' (use k, m or g)"),
            };
            t = t[..^1];
        }

        bool ok = t.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(t.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong v)
            : ulong.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out v);
        if (!ok)
        {
            throw new ArgumentException($"{what} \"{text}\" is not a number (use 0x-prefixed hex or decimal)");
        }

        // A suffix can push a number that fits in 64 bits past 2^64 (18446744073709551615g): say so instead of
        // letting OverflowException escape as a stack trace.
        if (v > ulong.MaxValue / multiplier)
        {
            throw new ArgumentException($"{what} \"{text}\" is larger than 2^64-1");
        }

        return v * multiplier;
    }
}
