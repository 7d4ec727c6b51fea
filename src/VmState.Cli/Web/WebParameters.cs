using System.Globalization;
using VmState.Memory;

namespace VmState.Cli.Web;

/// <summary>
/// The parsers of every value a request carries (path segments and query parameters): bounded, with a 400 that names
/// the parameter and what was expected for anything else. Guest data never reaches them; the client does, so they are
/// a fuzz target (<c>webparams</c>).
/// </summary>
internal static class WebParameters
{
    /// <summary>The longest text accepted for one number (an address with separators fits easily).</summary>
    public const int MaxNumberText = 64;

    /// <summary>The most bytes one memory request reads (the JSON API); pages show at most <see cref="MaxPageLength"/>.</summary>
    public const int MaxReadLength = 1 << 20;

    /// <summary>The most bytes one memory page shows as a hexdump.</summary>
    public const int MaxPageLength = 64 << 10;

    /// <summary>The most bytes one write request carries.</summary>
    public const int MaxWriteLength = 4096;

    /// <summary>A source's index in the server's list (a path segment): decimal, below <paramref name="count"/>.</summary>
    /// <exception cref="WebRequestException">404 when it is not one of the sources.</exception>
    public static int SourceIndex(string? text, int count)
    {
        if (!TryDecimal(text, 6, out int index) || index >= count)
        {
            throw new WebRequestException(404, $"no source {Shown(text)}: the server has sources 0-{count - 1}");
        }

        return index;
    }

    /// <summary>A process id (a path segment or query value): a decimal number up to 4194304 (PID_MAX_LIMIT).</summary>
    /// <exception cref="WebRequestException">400 for anything else.</exception>
    public static int Pid(string? text, string what = "pid")
    {
        if (!TryDecimal(text, 7, out int pid) || pid > 4_194_304)
        {
            throw new WebRequestException(400, $"{what} {Shown(text)} is not a process id (a decimal number up to 4194304)");
        }

        return pid;
    }

    /// <summary>A small non-negative decimal (a vCPU index, a capture number): at most <paramref name="max"/>.</summary>
    /// <exception cref="WebRequestException">400 for anything else.</exception>
    public static int SmallNumber(string? text, string what, int max)
    {
        if (!TryDecimal(text, 9, out int n) || n > max)
        {
            throw new WebRequestException(400, $"{what} {Shown(text)} is not a number from 0 to {max}");
        }

        return n;
    }

    /// <summary>An address (0x-hex or decimal, <c>_</c> and <c>`</c> ignored, k/m/g suffixes) as the CLI takes it.</summary>
    /// <exception cref="WebRequestException">400 when it is missing, too long or not a number.</exception>
    public static ulong Address(string? text, string what)
    {
        if (string.IsNullOrEmpty(text))
        {
            throw new WebRequestException(400, $"{what} is missing (give an address, 0x-prefixed hex or decimal)");
        }

        if (text.Length > MaxNumberText)
        {
            throw new WebRequestException(400, $"{what} is longer than {MaxNumberText} characters");
        }

        try
        {
            return AddressText.Parse(text, what);
        }
        catch (ArgumentException e)
        {
            throw new WebRequestException(400, e.Message);
        }
    }

    /// <summary>A length from 1 to <paramref name="max"/> bytes (as <see cref="Address"/> parses it); <paramref name="fallback"/> when absent.</summary>
    /// <exception cref="WebRequestException">400 when malformed, zero, or larger than <paramref name="max"/>.</exception>
    public static int Length(string? text, int fallback, int max, string what = "len")
    {
        if (string.IsNullOrEmpty(text))
        {
            return fallback;
        }

        ulong len = Address(text, what);
        if (len == 0 || len > (ulong)max)
        {
            throw new WebRequestException(400, $"{what} {Shown(text)}: expected 1 to {max} bytes");
        }

        return (int)len;
    }

    /// <summary>
    /// A range <c>ADDR</c>, <c>ADDR+LEN</c> or <c>START-END</c> (end exclusive), as the memory pages take it in
    /// <c>?at=</c>; the length is <paramref name="fallback"/> when only an address is given.
    /// </summary>
    /// <exception cref="WebRequestException">400 when malformed, empty, wrapping past 2^64, or longer than <paramref name="max"/>.</exception>
    public static (ulong Address, int Length) Range(string? text, int fallback, int max, string what = "at")
    {
        if (string.IsNullOrEmpty(text))
        {
            throw new WebRequestException(400, $"{what} is missing (give ADDR, ADDR+LEN or START-END)");
        }

        if (text.Length > 2 * MaxNumberText + 1)
        {
            throw new WebRequestException(400, $"{what} is longer than {2 * MaxNumberText + 1} characters");
        }

        int plus = text.IndexOf('+', StringComparison.Ordinal);
        int dash = text.IndexOf('-', StringComparison.Ordinal);
        if (plus >= 0 && dash >= 0)
        {
            throw new WebRequestException(400, $"{what} {Shown(text)}: give ADDR+LEN or START-END, not both");
        }

        if (plus >= 0)
        {
            ulong start = Address(text[..plus], what);
            int len = Length(text[(plus + 1)..], fallback, max, what + " length");
            return (Checked(start, len, text, what), len);
        }

        if (dash >= 0)
        {
            ulong start = Address(text[..dash], what);
            ulong end = Address(text[(dash + 1)..], what + " end");
            if (end <= start || end - start > (ulong)max)
            {
                throw new WebRequestException(400, $"{what} {Shown(text)}: the end must be above the start and at most {max} bytes after it");
            }

            return (start, (int)(end - start));
        }

        ulong address = Address(text, what);
        return (Checked(address, fallback, text, what), fallback);
    }

    /// <summary>Bytes to write, as hex digits (pairs, optionally separated by spaces, <c>0x</c> prefix allowed), at most <see cref="MaxWriteLength"/>.</summary>
    /// <exception cref="WebRequestException">400 when empty, odd, not hex, or too long.</exception>
    public static byte[] HexBytes(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            throw new WebRequestException(400, "data is missing (give the bytes as hex digits, e.g. 90 90 or 0x9090)");
        }

        if (text.Length > 4 * MaxWriteLength)
        {
            throw new WebRequestException(400, $"data is longer than {MaxWriteLength} bytes");
        }

        string t = text.Trim();
        if (t.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            t = t[2..];
        }

        var bytes = new List<byte>();
        int i = 0;
        while (i < t.Length)
        {
            if (t[i] is ' ' or '\n' or '\r' or '\t')
            {
                i++;
                continue;
            }

            if (i + 1 >= t.Length || !Uri.IsHexDigit(t[i]) || !Uri.IsHexDigit(t[i + 1]))
            {
                throw new WebRequestException(400, $"data: byte {bytes.Count} is not two hex digits");
            }

            bytes.Add((byte)((Convert.ToInt32(t[i].ToString(), 16) << 4) | Convert.ToInt32(t[i + 1].ToString(), 16)));
            i += 2;
        }

        if (bytes.Count == 0 || bytes.Count > MaxWriteLength)
        {
            throw new WebRequestException(400, $"data: expected 1 to {MaxWriteLength} bytes, got {bytes.Count}");
        }

        return [.. bytes];
    }

    /// <summary>Which addresses a memory request means: <c>pa</c> (guest-physical) or <c>va</c> (virtual, the default).</summary>
    /// <exception cref="WebRequestException">400 for any other value.</exception>
    public static bool IsPhysical(string? text) => text switch
    {
        null or "" or "va" => false,
        "pa" => true,
        _ => throw new WebRequestException(400, $"space {Shown(text)}: expected pa or va"),
    };

    /// <summary>The longest kernel symbol name accepted (KSYM_NAME_LEN is 512; real names are far shorter).</summary>
    public const int MaxSymbolText = 128;

    /// <summary>A kernel symbol's name (a breakpoint's target): a letter or <c>_</c>, then letters, digits, <c>_</c> and <c>.</c>.</summary>
    /// <exception cref="WebRequestException">400 when missing, too long or holding anything else.</exception>
    public static string Symbol(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            throw new WebRequestException(400, "symbol is missing (give a kernel function's name, e.g. symbol=do_sys_openat2)");
        }

        bool ok = text.Length <= MaxSymbolText && (char.IsAsciiLetter(text[0]) || text[0] == '_');
        foreach (char c in text)
        {
            ok &= char.IsAsciiLetterOrDigit(c) || c is '_' or '.';
        }

        return ok ? text : throw new WebRequestException(400, $"symbol {Shown(text)} is not a kernel symbol name (letters, digits, _ and ., at most {MaxSymbolText})");
    }

    /// <summary>The value as a message shows it: quoted, cut at 40 characters, control characters escaped.</summary>
    public static string Shown(string? text)
    {
        if (text is null)
        {
            return "(none)";
        }

        string cut = text.Length > 40 ? text[..40] + "…" : text;
        var sb = new System.Text.StringBuilder("\"");
        foreach (char c in cut)
        {
            sb.Append(char.IsControl(c) ? string.Create(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}") : c);
        }

        return sb.Append('"').ToString();
    }

    /// <summary><paramref name="length"/> bytes at <paramref name="start"/> must not run past 2^64.</summary>
    /// <exception cref="WebRequestException">400 when they do.</exception>
    public static void CheckRange(ulong start, int length, string what = "addr") =>
        Checked(start, length, "0x" + start.ToString("x", CultureInfo.InvariantCulture), what);

    private static ulong Checked(ulong start, int length, string text, string what) =>
        start > ulong.MaxValue - (ulong)length + 1
            ? throw new WebRequestException(400, $"{what} {Shown(text)}: the range runs past 2^64")
            : start;

    private static bool TryDecimal(string? text, int maxDigits, out int value)
    {
        value = 0;
        if (string.IsNullOrEmpty(text) || text.Length > maxDigits)
        {
            return false;
        }

        foreach (char c in text)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }

        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }
}
