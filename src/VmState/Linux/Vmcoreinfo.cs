using System.Buffers.Binary;
using VmState.IO;

namespace VmState.Linux;

/// <summary>
/// The kernel's VMCOREINFO dictionary: <c>KEY=value</c> lines built by <c>crash_save_vmcoreinfo_init()</c> (Linux 6.1
/// <c>kernel/crash_core.c</c>, 6.9+ <c>kernel/vmcore_info.c</c>; keys documented in
/// <c>Documentation/admin-guide/kdump/vmcoreinfo.rst</c>), with typed accessors. Values are parsed on access; a
/// malformed value throws <see cref="VmStateFormatException"/> naming the line's offset in the text.
/// </summary>
public sealed class Vmcoreinfo
{
    // string → string: shares the runtime's precompiled generic code (this is parsed on every run of every command).
    private readonly Dictionary<string, string> _entries;

    private Vmcoreinfo(string text, Dictionary<string, string> entries)
    {
        Text = text;
        _entries = entries;
    }

    /// <summary>The text as parsed.</summary>
    public string Text { get; }

    /// <summary>Every key in text order of first appearance.</summary>
    public IEnumerable<string> Keys => _entries.Keys;

    /// <summary>Number of distinct keys.</summary>
    public int Count => _entries.Count;

    /// <summary>Parses the text of a VMCOREINFO note. Lines without '=' are ignored; a repeated key keeps its last value, as the kernel's consumers (makedumpfile, crash) do.</summary>
    public static Vmcoreinfo Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var entries = new Dictionary<string, string>(StringComparer.Ordinal);

        // Split on '\n' by hand: the kernel writes "\n" line ends, and the first use of EnumerateLines costs
        // milliseconds of start-up in a short-lived process.
        ReadOnlySpan<char> rest = text;
        while (rest.Length > 0)
        {
            int nl = rest.IndexOf('\n');
            ReadOnlySpan<char> line = (nl >= 0 ? rest[..nl] : rest).TrimEnd('\r').TrimEnd('\0');
            rest = nl >= 0 ? rest[(nl + 1)..] : [];
            int eq = line.IndexOf('=');
            if (eq > 0)
            {
                entries[line[..eq].ToString()] = line[(eq + 1)..].ToString();
            }
        }

        return new Vmcoreinfo(text, entries);
    }

    /// <summary>Parses the descriptor of a whole VMCOREINFO ELF note (header, name, descriptor), as returned by <see cref="Machine.VmcoreinfoLocator.Find"/>.</summary>
    public static Vmcoreinfo FromNote(byte[] note)
    {
        ArgumentNullException.ThrowIfNull(note);
        if (note.Length < 24)
        {
            throw new VmStateFormatException(0, "VMCOREINFO note", $"{note.Length} bytes is shorter than the 24-byte note header and name");
        }

        // The descriptor follows the 12-byte header and the name padded to 4 bytes ("VMCOREINFO\0\0"): as
        // VmcoreinfoLocator.Text, but decoded by hand (ASCII; an Encoding's first use is slow in a short-lived process).
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(note.AsSpan(4));
        int length = (int)Math.Min(size, (uint)(note.Length - 24));
        char[] chars = new char[length];
        int end = 0;
        for (int i = 0; i < length; i++)
        {
            chars[i] = (char)note[24 + i];
            if (note[24 + i] != 0)
            {
                end = i + 1;
            }
        }

        return Parse(new string(chars, 0, end));
    }

    /// <summary>The raw value of <paramref name="key"/> (e.g. "OSRELEASE", "SYMBOL(_stext)"), or null.</summary>
    public string? Get(string key) => _entries.GetValueOrDefault(key);

    /// <summary>True when the key is present.</summary>
    public bool Contains(string key) => _entries.ContainsKey(key);

    /// <summary><c>OSRELEASE</c>: the kernel release (uname -r).</summary>
    public string? OsRelease => Get("OSRELEASE");

    /// <summary><c>BUILD-ID</c>: the vmlinux GNU build id in hex (Linux 5.9+).</summary>
    public string? BuildId => Get("BUILD-ID");

    /// <summary><c>PAGESIZE</c>, decimal.</summary>
    public long? PageSize => Decimal("PAGESIZE");

    /// <summary><c>KERNELOFFSET</c>: the virtual KASLR slide of the kernel image, hex without prefix (x86 <c>arch_crash_save_vmcoreinfo</c>).</summary>
    public ulong? KernelOffset => HexValue("KERNELOFFSET");

    /// <summary><c>CRASHTIME</c>: seconds since the epoch, written at crash time only.</summary>
    public long? CrashTime => Decimal("CRASHTIME");

    /// <summary><c>NUMBER(phys_base)</c> (x86-64): may be negative when the kernel was loaded below its link address.</summary>
    public long? PhysBase => Number("phys_base");

    /// <summary><c>NUMBER(pgtable_l5_enabled)</c> (x86-64): true when the kernel runs with 5-level paging.</summary>
    public bool? FiveLevelPaging => Number("pgtable_l5_enabled") is long v ? v != 0 : null;

    /// <summary><c>SYMBOL(name)</c>: a runtime (already relocated) virtual address, hex without prefix.</summary>
    public ulong? Symbol(string name) => HexValue($"SYMBOL({name})");

    /// <summary><c>OFFSET(struct.member)</c>, decimal.</summary>
    public long? Offset(string structAndMember) => Decimal($"OFFSET({structAndMember})");

    /// <summary><c>SIZE(name)</c>, decimal.</summary>
    public long? Size(string name) => Decimal($"SIZE({name})");

    /// <summary><c>LENGTH(name)</c>, decimal.</summary>
    public long? Length(string name) => Decimal($"LENGTH({name})");

    /// <summary><c>NUMBER(name)</c>, signed decimal (the kernel prints it with <c>%ld</c>).</summary>
    public long? Number(string name) => Decimal($"NUMBER({name})");

    private ulong? HexValue(string key)
    {
        if (!_entries.TryGetValue(key, out string? value))
        {
            return null;
        }

        ReadOnlySpan<char> v = value.AsSpan().Trim();
        if (v.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            v = v[2..];
        }

        if (v.Length == 0 || v.Length > 16 || !TryHex(v, out ulong parsed))
        {
            throw new VmStateFormatException(LineOffset(key), "VMCOREINFO", $"{key}={value}: expected a hexadecimal address");
        }

        return parsed;
    }

    private long? Decimal(string key)
    {
        if (!_entries.TryGetValue(key, out string? text))
        {
            return null;
        }

        ReadOnlySpan<char> v = text.AsSpan().Trim();
        bool negative = v.StartsWith('-');
        ReadOnlySpan<char> digits = negative ? v[1..] : v;
        bool ok;
        long value = 0;
        if (digits.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            // Not what the kernel prints, but Volatility parses these values base-0; accept hex the same way.
            ok = TryHex(digits[2..], out ulong u) && u <= long.MaxValue;
            value = (long)u;
        }
        else
        {
            ok = TryDecimal(digits, out value);
        }

        if (!ok)
        {
            throw new VmStateFormatException(LineOffset(key), "VMCOREINFO", $"{key}={text}: expected a decimal number");
        }

        return negative ? -value : value;
    }

    // Hand-written digit loops: the framework's culture-aware parsers cost milliseconds on first use in a short-lived process.
    private static bool TryHex(ReadOnlySpan<char> s, out ulong value)
    {
        value = 0;
        foreach (char c in s)
        {
            int d = c is >= '0' and <= '9' ? c - '0' : c is >= 'a' and <= 'f' ? c - 'a' + 10 : c is >= 'A' and <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0)
            {
                return false;
            }

            value = (value << 4) | (uint)d;
        }

        return s.Length is > 0 and <= 16;
    }

    private static bool TryDecimal(ReadOnlySpan<char> s, out long value)
    {
        value = 0;
        if (s.Length == 0)
        {
            return false;
        }

        foreach (char c in s)
        {
            if (c is < '0' or > '9' || value > (long.MaxValue - (c - '0')) / 10)
            {
                return false;
            }

            value = (value * 10) + (c - '0');
        }

        return true;
    }

    /// <summary>Offset in the text of the last line defining <paramref name="key"/> (the one whose value is used), for error messages.</summary>
    private int LineOffset(string key)
    {
        string needle = key + "=";
        int at = Text.LastIndexOf("\n" + needle, StringComparison.Ordinal);
        return at >= 0 ? at + 1 : Text.StartsWith(needle, StringComparison.Ordinal) ? 0 : -1;
    }
}
