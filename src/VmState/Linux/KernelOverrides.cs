using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using VmState.IO;
using VmState.Linux.Btf;

namespace VmState.Linux;

/// <summary>
/// The optional overrides of what is read from guest memory: a System.map file for the symbols and a vmlinux (its
/// .BTF section) or raw BTF file for the types. Both are checked against the kernel in memory before use.
/// </summary>
public static class KernelOverrides
{
    private const int MaxSystemMapBytes = 512 << 20;
    private const int MaxSystemMapSymbols = 4 << 20;
    private const long MaxBtfBytes = 256L << 20;

    /// <summary>Applies the overrides <paramref name="options"/> names to <paramref name="kernel"/>.</summary>
    /// <exception cref="KernelDataException">A file that does not match the kernel in memory, or is malformed.</exception>
    /// <exception cref="IOException">A file cannot be read.</exception>
    public static void Apply(LinuxKernel kernel, KernelLocatorOptions options)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(options);
        if (options.SystemMapPath is string map)
        {
            (Kallsyms symbols, long slide) = ReadSystemMap(map, kernel.TextAddress);
            if (!symbols.TryGetAddress("linux_banner", out ulong banner) || !kernel.ReadCString(banner, 14, "linux_banner").Equals("Linux version ", StringComparison.Ordinal))
            {
                throw new KernelDataException("System.map", $"{map} does not match this kernel: its linux_banner, moved by the KASLR offset 0x{slide:x}, does not read \"Linux version \"");
            }

            kernel.OverrideSymbols(symbols, $"symbols: {symbols.Count} from {map} (moved by the KASLR offset 0x{slide:x}; linux_banner checked)");
        }

        if (options.BtfPath is string btfPath)
        {
            (byte[] blob, string where) = ReadBtf(btfPath);
            BtfTypes types;
            try
            {
                types = BtfTypes.Parse(blob);
            }
            catch (VmStateFormatException e)
            {
                throw new KernelDataException("BTF file", $"{btfPath}: {e.Message}", e);
            }

            if (types.Find("task_struct", BtfKind.Struct) == 0)
            {
                throw new KernelDataException("BTF file", $"{btfPath} has no struct task_struct: not the BTF of a kernel");
            }

            kernel.OverrideTypes(types, $"types: {types.Count} from {btfPath} ({where})");
        }
    }

    /// <summary>
    /// Parses System.map ("ADDRESS TYPE NAME" per line) and relocates it so that its <c>_text</c> lands on
    /// <paramref name="textAddress"/>; absolute symbols (type A/a) are not moved.
    /// </summary>
    /// <exception cref="KernelDataException">Malformed lines, or no <c>_text</c>.</exception>
    public static (Kallsyms Symbols, long Slide) ReadSystemMap(string path, ulong textAddress)
    {
        ArgumentNullException.ThrowIfNull(path);
        var info = new FileInfo(path);
        if (info.Length > MaxSystemMapBytes)
        {
            throw new KernelDataException("System.map", $"{path} is {info.Length} bytes, more than the {MaxSystemMapBytes}-byte limit");
        }

        var list = new List<(string, char, ulong)>();
        ulong? linkText = null;
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (line.Length == 0)
            {
                continue;
            }

            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 3 || f[1].Length != 1 || !ulong.TryParse(f[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong address))
            {
                throw new KernelDataException("System.map", $"{path} line {lineNumber}: expected \"ADDRESS TYPE NAME\", got \"{(line.Length > 80 ? line[..80] : line)}\"");
            }

            if (f[2] == "_text")
            {
                linkText = address;
            }

            list.Add((f[2], f[1][0], address));
            if (list.Count > MaxSystemMapSymbols)
            {
                throw new KernelDataException("System.map", $"{path} has more than {MaxSystemMapSymbols} symbols");
            }
        }

        if (linkText is not ulong lt)
        {
            string hint = list.Any(x => x.Item1 == "The") || File.ReadLines(path).Any(l => l.Contains("-dbg package", StringComparison.Ordinal))
                ? " (it is Debian's placeholder; the real System.map is in the linux-image-VERSION-dbg package)"
                : string.Empty;
            throw new KernelDataException("System.map", $"{path} has no _text symbol to relocate by{hint}");
        }

        long slide = (long)(textAddress - lt);
        var moved = list.Select(s => (s.Item1, s.Item2, s.Item2 is 'A' or 'a' || s.Item3 < 0xffff_8000_0000_0000UL ? s.Item3 : (ulong)((long)s.Item3 + slide)));
        return (Kallsyms.FromList(moved, $"System.map {path}"), slide);
    }

    /// <summary>The BTF bytes of a file: the .BTF section of an ELF64 vmlinux, or the file itself when it is raw BTF.</summary>
    /// <exception cref="KernelDataException">Neither raw BTF nor an ELF with a .BTF section.</exception>
    public static (byte[] Blob, string Where) ReadBtf(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using FileStream f = File.OpenRead(path);
        Span<byte> head = stackalloc byte[64];
        int n = f.ReadAtLeast(head, 64, throwOnEndOfStream: false);
        if (n >= 2 && BinaryPrimitives.ReadUInt16LittleEndian(head) == 0xeb9f)
        {
            if (f.Length > MaxBtfBytes)
            {
                throw new KernelDataException("BTF file", $"{path} is {f.Length} bytes, more than the {MaxBtfBytes}-byte limit");
            }

            f.Position = 0;
            byte[] raw = new byte[f.Length];
            f.ReadExactly(raw);
            return (raw, "raw BTF");
        }

        if (n < 64 || !head[..4].SequenceEqual("\x7fELF"u8) || head[4] != 2 || head[5] != 1)
        {
            throw new KernelDataException("BTF file", $"{path} is neither raw BTF (magic 0xeb9f) nor a little-endian ELF64 vmlinux");
        }

        ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(head[40..]);
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(head[58..]);
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(head[60..]);
        int shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(head[62..]);
        if (shentsize != 64 || shnum == 0 || shstrndx >= shnum || shoff + ((ulong)shnum * 64) > (ulong)f.Length)
        {
            throw new KernelDataException("BTF file", $"{path}: section header table (e_shoff 0x{shoff:x}, {shnum} entries of {shentsize} bytes, e_shstrndx {shstrndx}) does not fit the file");
        }

        byte[] sections = new byte[shnum * 64];
        f.Position = (long)shoff;
        f.ReadExactly(sections);
        (ulong Offset, ulong Size) Section(int i) =>
            (BinaryPrimitives.ReadUInt64LittleEndian(sections.AsSpan((i * 64) + 24)), BinaryPrimitives.ReadUInt64LittleEndian(sections.AsSpan((i * 64) + 32)));
        (ulong strOff, ulong strSize) = Section(shstrndx);
        if (strOff + strSize > (ulong)f.Length || strSize > 1 << 24)
        {
            throw new KernelDataException("BTF file", $"{path}: the section-name table runs past the end of the file");
        }

        byte[] names = new byte[strSize];
        f.Position = (long)strOff;
        f.ReadExactly(names);
        for (int i = 0; i < shnum; i++)
        {
            uint nameOff = BinaryPrimitives.ReadUInt32LittleEndian(sections.AsSpan(i * 64));
            if (nameOff >= names.Length)
            {
                continue;
            }

            int end = Array.IndexOf(names, (byte)0, (int)nameOff);
            if (Encoding.ASCII.GetString(names, (int)nameOff, (end < 0 ? names.Length : end) - (int)nameOff) != ".BTF")
            {
                continue;
            }

            (ulong off, ulong size) = Section(i);
            if (size > (ulong)MaxBtfBytes || off + size > (ulong)f.Length)
            {
                throw new KernelDataException("BTF file", $"{path}: the .BTF section (offset 0x{off:x}, {size} bytes) does not fit the file or the limit");
            }

            byte[] blob = new byte[size];
            f.Position = (long)off;
            f.ReadExactly(blob);
            return (blob, $".BTF section of an ELF vmlinux, {size} bytes");
        }

        throw new KernelDataException("BTF file", $"{path} is an ELF file without a .BTF section (a vmlinux built without CONFIG_DEBUG_INFO_BTF?)");
    }
}
