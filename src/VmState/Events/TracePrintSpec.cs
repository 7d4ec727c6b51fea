using System.Globalization;
using System.Text;

namespace VmState.Events;

/// <summary>
/// What <c>vmstate trace break --print</c> prints at each hit: a comma-separated list of <c>argN</c> (N 0–5, the
/// x86-64 SysV register arguments RDI, RSI, RDX, RCX, R8, R9, valid at a function's first instruction), each
/// optionally followed by a format: <c>:x</c> (hex, the default), <c>:d</c> (signed decimal), <c>:u</c> (unsigned
/// decimal) or <c>:str</c> (the NUL-terminated string the argument points to, read from guest memory through the
/// hit's page tables, at most <see cref="MaxString"/> bytes).
/// </summary>
public sealed class TracePrintSpec
{
    /// <summary>The most bytes of a <c>:str</c> argument read.</summary>
    public const int MaxString = 256;

    private TracePrintSpec(IReadOnlyList<TracePrintItem> items)
    {
        Items = items;
    }

    /// <summary>The items in order.</summary>
    public IReadOnlyList<TracePrintItem> Items { get; }

    /// <summary>Parses a spec such as <c>arg0,arg1:str,arg2:d</c>.</summary>
    /// <exception cref="FormatException">Not a valid spec (the message says which item and why).</exception>
    public static TracePrintSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var items = new List<TracePrintItem>();
        foreach (string raw in text.Split(','))
        {
            string item = raw.Trim();
            int colon = item.IndexOf(':', StringComparison.Ordinal);
            string name = colon < 0 ? item : item[..colon];
            string format = colon < 0 ? "x" : item[(colon + 1)..];
            if (name.Length != 4 || !name.StartsWith("arg", StringComparison.Ordinal) || name[3] is < '0' or > '5')
            {
                throw new FormatException($"--print item \"{item}\": expected arg0 to arg5 (the register arguments RDI, RSI, RDX, RCX, R8, R9)");
            }

            TracePrintFormat f = format switch
            {
                "x" => TracePrintFormat.Hex,
                "d" => TracePrintFormat.Signed,
                "u" => TracePrintFormat.Unsigned,
                "str" => TracePrintFormat.String,
                _ => throw new FormatException($"--print item \"{item}\": unknown format \"{format}\" (x, d, u or str)"),
            };
            items.Add(new TracePrintItem(item, name[3] - '0', f));
        }

        return new TracePrintSpec(items);
    }

    /// <summary>The values of the items at <paramref name="hit"/>, as text (strings escaped: see <see cref="Escape"/>).</summary>
    public IReadOnlyList<(string Name, string Value)> Format(BreakpointHit hit)
    {
        ArgumentNullException.ThrowIfNull(hit);
        var values = new List<(string, string)>(Items.Count);
        foreach (TracePrintItem item in Items)
        {
            ulong v = hit.Registers.Argument(item.Argument);
            string text = item.Format switch
            {
                TracePrintFormat.Signed => ((long)v).ToString(CultureInfo.InvariantCulture),
                TracePrintFormat.Unsigned => v.ToString(CultureInfo.InvariantCulture),
                TracePrintFormat.String => hit.TryReadString(v, MaxString, out byte[] s) ? "\"" + Escape(s) + "\"" : $"<unreadable 0x{v:x}>",
                _ => $"0x{v:x}",
            };
            values.Add((item.Name, text));
        }

        return values;
    }

    /// <summary>
    /// Guest bytes as printable ASCII: backslash, double quote and bytes outside 0x20–0x7e are written as C escapes
    /// (<c>\\</c>, <c>\"</c>, <c>\n</c>, <c>\t</c>, <c>\xNN</c>), so a guest string cannot send control sequences to a terminal.
    /// </summary>
    public static string Escape(ReadOnlySpan<byte> bytes)
    {
        var sb = new StringBuilder(bytes.Length);
        foreach (byte b in bytes)
        {
            _ = b switch
            {
                (byte)'\\' => sb.Append(@"\\"),
                (byte)'"' => sb.Append("\\\""),
                (byte)'\n' => sb.Append(@"\n"),
                (byte)'\t' => sb.Append(@"\t"),
                (byte)'\r' => sb.Append(@"\r"),
                >= 0x20 and < 0x7f => sb.Append((char)b),
                _ => sb.Append(CultureInfo.InvariantCulture, $"\\x{b:x2}"),
            };
        }

        return sb.ToString();
    }
}

/// <summary>One <c>--print</c> item.</summary>
/// <param name="Name">As written (<c>arg1</c>, <c>arg1:str</c>): the key of the value in JSON output.</param>
/// <param name="Argument">The argument index (0–5).</param>
/// <param name="Format">How to print it.</param>
public sealed record TracePrintItem(string Name, int Argument, TracePrintFormat Format);

/// <summary>How a <c>--print</c> item is shown.</summary>
public enum TracePrintFormat
{
    /// <summary>0x-prefixed hex.</summary>
    Hex,

    /// <summary>Signed decimal.</summary>
    Signed,

    /// <summary>Unsigned decimal.</summary>
    Unsigned,

    /// <summary>The C string the argument points to.</summary>
    String,
}
