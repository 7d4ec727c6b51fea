using System.Globalization;
using System.Text.Json;
using VmState.Replay;

namespace VmState.Cli.Commands;

/// <summary>
/// The values of <c>vmstate rr</c>'s options that are parsed rather than passed on: instruction counts, the predicate of
/// <c>rr find</c> (<c>--process</c>, <c>--bytes</c> with <c>--phys</c>/<c>--virt</c>, <c>--symbol</c> with
/// <c>--equals</c>/<c>--changes</c>) and the <c>@FILE</c> of <c>rr goto</c> (a result of <c>rr find --json</c>).
/// Bad values are an <see cref="ArgumentException"/> naming the option (the <c>rrfind</c> fuzz target holds it to that).
/// </summary>
internal static class RrArguments
{
    /// <summary>The longest <c>--bytes</c> pattern, in bytes (a page: the predicate reads at most 64 MiB around it).</summary>
    public const int MaxPatternBytes = 4096;

    /// <summary>The largest <c>@FILE</c> read.</summary>
    public const int MaxFindResultBytes = 1 << 20;

    /// <summary>An instruction count: decimal, or hex with 0x.</summary>
    public static ulong ParseCount(string text, string what)
    {
        bool hex = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        return ulong.TryParse(hex ? text[2..] : text, hex ? NumberStyles.AllowHexSpecifier : NumberStyles.None, CultureInfo.InvariantCulture, out ulong v)
            ? v
            : throw new ArgumentException($"{what} {Shown(text)} is not an instruction count");
    }

    /// <summary><c>rr find</c>'s predicate from its options (one of them given; <c>--break</c> is handled apart).</summary>
    public static ReplayPredicate Predicate(string? process, string? bytes, string? phys, string? virt, string? symbol, int size, string? equals, bool changes)
    {
        if (process is not null)
        {
            return ReplayPredicate.Process(process);
        }

        if (bytes is not null)
        {
            if ((phys is null) == (virt is null))
            {
                throw new ArgumentException("--bytes needs one of --phys ADDR[..END] or --virt ADDR[..END]");
            }

            byte[] pattern = HexBytes(bytes);
            string range = phys ?? virt!;
            string option = phys is not null ? "--phys" : "--virt";
            int dots = range.IndexOf("..", StringComparison.Ordinal);
            ulong start = AddressParser.Parse(dots < 0 ? range : range[..dots], $"{option} address");
            ulong? end = dots < 0 ? null : AddressParser.Parse(range[(dots + 2)..], $"{option} end address");
            return end is ulong e && e <= start ? throw new ArgumentException($"{option} {Shown(range)}: the range's end is not after its start") : ReplayPredicate.Bytes(pattern, phys is not null, start, end);
        }

        if (symbol is null)
        {
            throw new ArgumentException("give one predicate: --process, --bytes, --symbol or --break");
        }

        if (size is not (1 or 2 or 4 or 8))
        {
            throw new ArgumentException("--size is 1, 2, 4 or 8");
        }

        if ((equals is null) == !changes)
        {
            throw new ArgumentException("--symbol needs one of --equals V or --changes");
        }

        ulong? value = equals is null ? null : ParseCount(equals, "--equals");
        if (value is ulong v && size < 8 && v >> (size * 8) != 0)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"--equals {Shown(equals!)} does not fit in --size {size}"));
        }

        return ReplayPredicate.Symbol(symbol, size, value);
    }

    /// <summary>The <c>--bytes</c> pattern: hex digits (optionally 0x-prefixed), 1 to <see cref="MaxPatternBytes"/> bytes.</summary>
    public static byte[] HexBytes(string text)
    {
        string digits = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? text[2..] : text;
        if (digits.Length == 0)
        {
            throw new ArgumentException("--bytes is empty");
        }

        if (digits.Length > 2 * MaxPatternBytes)
        {
            throw new ArgumentException($"--bytes has {digits.Length / 2} bytes, more than the {MaxPatternBytes} a pattern may have");
        }

        if (digits.Length % 2 != 0 || !digits.All(char.IsAsciiHexDigit))
        {
            throw new ArgumentException($"--bytes {Shown(text)} is not hex bytes (two hex digits a byte)");
        }

        return Convert.FromHexString(digits);
    }

    /// <summary>The "icount" of a result of <c>rr find --json</c> (the bytes of <paramref name="file"/>).</summary>
    public static ulong FindResultCount(ReadOnlySpan<byte> json, string file)
    {
        if (json.Length > MaxFindResultBytes)
        {
            throw new ArgumentException($"{file} is not a result of vmstate rr find --json ({json.Length} bytes)");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{file} is not a result of vmstate rr find --json: not JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine})");
        }

        using (doc)
        {
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("icount", out JsonElement i) && i.ValueKind == JsonValueKind.Number && i.TryGetUInt64(out ulong v)
                ? v
                : throw new ArgumentException($"{file} has no \"icount\" (the predicate never held?)");
        }
    }

    /// <summary>A value for a message: control characters escaped, cut short.</summary>
    private static string Shown(string text) => TerminalText.Escape(text.Length <= 64 ? text : text[..64] + "…");
}
