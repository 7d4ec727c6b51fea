using System.Buffers.Binary;
using System.Text;
using VmState.Arch.X86;
using VmState.IO;

namespace VmState.Linux;

/// <summary>
/// Where a kernel was found, as kept between runs in the machine's notes (<see cref="Machine.IMachineNotes"/>, the
/// index cache): the strategy, the page-table root and paging mode, the VMCOREINFO text and where it came from, and
/// the evidence of the search. The next run on the same unchanged file starts from the root, skipping the VMCOREINFO
/// scan and any strategy that failed, and still validates the kernel (image, kallsyms and <c>linux_banner</c>) as a
/// fresh search does. Layout (little-endian): version (1), method (1), paging mode (1), CR3 (8), VMCOREINFO text and
/// its source (each a string: 4-byte length, 0xFFFFFFFF for none, UTF-8), the evidence count (2) and its strings.
/// </summary>
internal sealed record KernelLocationNote(KernelLocationMethod Method, PagingMode Mode, ulong Cr3, string? VmcoreinfoText, string? VmcoreinfoSource, IReadOnlyList<string> Evidence)
{
    private const byte Version = 1;
    /// <summary>The longest string a note keeps (VMCOREINFO text, an evidence line).</summary>
    internal const int MaxString = 256 << 10;

    /// <summary>The most evidence lines a note keeps.</summary>
    internal const int MaxEvidence = 1024;
    private const string S = "kernel location note";

    /// <summary>The note kind for the strategies <paramref name="options"/> allow (a note found with others is not used).</summary>
    public static string Kind(KernelLocatorOptions options) =>
        $"kernel-location-{(options.UseVmcoreinfo ? 'v' : '-')}{(options.UseCpuState ? 'c' : '-')}{(options.UseBannerScan ? 'b' : '-')}";

    /// <summary>The note of a located kernel.</summary>
    public static KernelLocationNote Of(LinuxKernel kernel) =>
        new(kernel.Method, kernel.AddressSpace.Mode, kernel.AddressSpace.Cr3, kernel.Vmcoreinfo?.Text, kernel.VmcoreinfoSource, kernel.Evidence);

    /// <summary>Encodes the note; null when a string in it is too long to keep.</summary>
    public byte[]? Encode()
    {
        if (new[] { VmcoreinfoText, VmcoreinfoSource }.Concat(Evidence).Any(x => x is not null && Encoding.UTF8.GetByteCount(x) > MaxString))
        {
            return null;
        }

        using var ms = new MemoryStream();
        ms.WriteByte(Version);
        ms.WriteByte((byte)Method);
        ms.WriteByte((byte)Mode);
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, Cr3);
        ms.Write(b);
        WriteString(ms, VmcoreinfoText);
        WriteString(ms, VmcoreinfoSource);
        BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)Math.Min(Evidence.Count, MaxEvidence));
        ms.Write(b[..2]);
        foreach (string e in Evidence.Take(MaxEvidence))
        {
            WriteString(ms, e);
        }

        return ms.ToArray();
    }

    /// <summary>Decodes a note, checking every length and value before use.</summary>
    /// <exception cref="VmStateFormatException">The bytes are not a note of this version.</exception>
    public static KernelLocationNote Decode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 11)
        {
            throw new VmStateFormatException(0, S, $"{bytes.Length} bytes is too short (11 expected at least)");
        }

        if (bytes[0] != Version)
        {
            throw new VmStateFormatException(0, S, $"version {bytes[0]}, expected {Version}");
        }

        var method = (KernelLocationMethod)bytes[1];
        var mode = (PagingMode)bytes[2];
        if (!Enum.IsDefined(method))
        {
            throw new VmStateFormatException(1, S, $"unknown location method {bytes[1]}");
        }

        if (mode is not (PagingMode.Level4 or PagingMode.Level5))
        {
            throw new VmStateFormatException(2, S, $"paging mode {bytes[2]}, expected 4- or 5-level");
        }

        ulong cr3 = BinaryPrimitives.ReadUInt64LittleEndian(bytes[3..]);
        int at = 11;
        string? text = ReadString(bytes, ref at);
        string? source = ReadString(bytes, ref at);
        if (bytes.Length - at < 2)
        {
            throw new VmStateFormatException(at, S, "truncated before the evidence count");
        }

        int count = BinaryPrimitives.ReadUInt16LittleEndian(bytes[at..]);
        if (count > MaxEvidence)
        {
            throw new VmStateFormatException(at, S, $"{count} evidence lines, more than {MaxEvidence}");
        }

        at += 2;
        var evidence = new List<string>(count);
        for (int i = 0; i < count; i++)
        {
            evidence.Add(ReadString(bytes, ref at) ?? throw new VmStateFormatException(at, S, $"evidence line {i} is missing"));
        }

        if (at != bytes.Length)
        {
            throw new VmStateFormatException(at, S, $"{bytes.Length - at} bytes after the last evidence line");
        }

        return new KernelLocationNote(method, mode, cr3, text, source, evidence);
    }

    /// <summary>A string as the notes keep it: 4-byte length (0xFFFFFFFF for none), UTF-8.</summary>
    internal static void WriteString(MemoryStream ms, string? s)
    {
        Span<byte> n = stackalloc byte[4];
        if (s is null)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(n, uint.MaxValue);
            ms.Write(n);
            return;
        }

        byte[] b = Encoding.UTF8.GetBytes(s);
        BinaryPrimitives.WriteUInt32LittleEndian(n, (uint)b.Length);
        ms.Write(n);
        ms.Write(b);
    }

    /// <summary>A string written by <see cref="WriteString"/>, its length checked against what follows and <c>MaxString</c>.</summary>
    internal static string? ReadString(ReadOnlySpan<byte> bytes, ref int at, string what = S)
    {
        if (bytes.Length - at < 4)
        {
            throw new VmStateFormatException(at, what, "truncated before a string's length");
        }

        uint length = BinaryPrimitives.ReadUInt32LittleEndian(bytes[at..]);
        at += 4;
        if (length == uint.MaxValue)
        {
            return null;
        }

        if (length > MaxString || length > (uint)(bytes.Length - at))
        {
            throw new VmStateFormatException(at - 4, what, $"a string of {length} bytes, but {bytes.Length - at} follow (at most {MaxString})");
        }

        string s = Encoding.UTF8.GetString(bytes.Slice(at, (int)length));
        at += (int)length;
        return s;
    }
}
