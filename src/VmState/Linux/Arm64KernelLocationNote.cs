using System.Buffers.Binary;
using System.Text;
using VmState.IO;

namespace VmState.Linux;

/// <summary>
/// Where an AArch64 kernel's pieces were found, as kept between runs in the machine's notes (the index cache, as
/// <see cref="KernelLocationNote"/> is for x86-64): the VMCOREINFO text and where it came from (the layout, the image
/// and the kallsyms tables follow from it without scanning RAM for the note), the banner's offset in the image and its
/// text, the vmlinux BTF's offset and size in the image, the <c>modules</c> list head found from a <c>struct module</c>
/// (0 when none was found), and the evidence of the search. The next run on the same unchanged file reads these
/// instead of reading and searching the whole image and the module areas, and checks each (the banner reads the same
/// text, the BTF header is there with that size, the list head's neighbours point back at it); any that does not
/// check makes the note unused. Layout (little-endian): version (1), VMCOREINFO text and source (strings: 4-byte
/// length, 0xFFFFFFFF for none, UTF-8), banner offset (4), banner (string), BTF offset (4), BTF size (4, 0 for none),
/// modules (8), evidence count (2) and its strings.
/// </summary>
internal sealed record Arm64KernelLocationNote(string VmcoreinfoText, string? VmcoreinfoSource, uint BannerOffset, string Banner, uint BtfOffset, uint BtfSize, ulong Modules, IReadOnlyList<string> Evidence)
{
    /// <summary>The note kind (the arm64 bootstrap always starts from VMCOREINFO).</summary>
    public const string Kind = "kernel-location-arm64";

    /// <summary>The largest image offset or size a note may hold: the locator's bound on the image.</summary>
    public const uint MaxOffset = 128 << 20;

    private const byte Version = 1;
    private const string S = "arm64 kernel location note";

    /// <summary>The note of a located AArch64 kernel; null when it is not one or a value does not fit the note.</summary>
    public static Arm64KernelLocationNote? Of(LinuxKernel kernel)
    {
        if (kernel.Arm64Layout is null || kernel.Vmcoreinfo is null)
        {
            return null;
        }

        ulong text = kernel.TextAddress;
        ulong banner = kernel.BannerAddress - text;
        if (kernel.BannerAddress < text || banner >= MaxOffset)
        {
            return null;
        }

        uint btfOffset = 0, btfSize = 0;
        if (kernel.Symbols.TryGetAddress("__start_BTF", out ulong start) && kernel.Symbols.TryGetAddress("__stop_BTF", out ulong stop))
        {
            if (start < text || stop <= start || stop - text > MaxOffset)
            {
                return null;
            }

            btfOffset = (uint)(start - text);
            btfSize = (uint)(stop - start);
        }

        ulong modules = kernel.Symbols.TryGetAddress("modules", out ulong m) ? m : 0;
        return new(kernel.Vmcoreinfo.Text, kernel.VmcoreinfoSource, (uint)banner, kernel.Banner, btfOffset, btfSize, modules, kernel.Evidence);
    }

    /// <summary>Encodes the note; null when a string in it is too long to keep.</summary>
    public byte[]? Encode()
    {
        if (new[] { VmcoreinfoText, VmcoreinfoSource, Banner }.Concat(Evidence).Any(x => x is not null && Encoding.UTF8.GetByteCount(x) > KernelLocationNote.MaxString))
        {
            return null;
        }

        using var ms = new MemoryStream();
        Span<byte> b = stackalloc byte[8];
        ms.WriteByte(Version);
        KernelLocationNote.WriteString(ms, VmcoreinfoText);
        KernelLocationNote.WriteString(ms, VmcoreinfoSource);
        BinaryPrimitives.WriteUInt32LittleEndian(b, BannerOffset);
        ms.Write(b[..4]);
        KernelLocationNote.WriteString(ms, Banner);
        BinaryPrimitives.WriteUInt32LittleEndian(b, BtfOffset);
        ms.Write(b[..4]);
        BinaryPrimitives.WriteUInt32LittleEndian(b, BtfSize);
        ms.Write(b[..4]);
        BinaryPrimitives.WriteUInt64LittleEndian(b, Modules);
        ms.Write(b);
        BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)Math.Min(Evidence.Count, KernelLocationNote.MaxEvidence));
        ms.Write(b[..2]);
        foreach (string e in Evidence.Take(KernelLocationNote.MaxEvidence))
        {
            KernelLocationNote.WriteString(ms, e);
        }

        return ms.ToArray();
    }

    /// <summary>Decodes a note, checking every length, offset and size before use.</summary>
    /// <exception cref="VmStateFormatException">The bytes are not a note of this version, or a value is out of bounds.</exception>
    public static Arm64KernelLocationNote Decode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 1)
        {
            throw new VmStateFormatException(0, S, "empty");
        }

        if (bytes[0] != Version)
        {
            throw new VmStateFormatException(0, S, $"version {bytes[0]}, expected {Version}");
        }

        int at = 1;
        string text = KernelLocationNote.ReadString(bytes, ref at, S) ?? throw new VmStateFormatException(1, S, "no VMCOREINFO text");
        string? source = KernelLocationNote.ReadString(bytes, ref at, S);
        uint bannerOffset = U32(bytes, ref at, "banner offset");
        string banner = KernelLocationNote.ReadString(bytes, ref at, S) ?? throw new VmStateFormatException(at - 4, S, "no banner");
        if (!banner.StartsWith("Linux version ", StringComparison.Ordinal))
        {
            throw new VmStateFormatException(at, S, "the banner does not start with \"Linux version \"");
        }

        uint btfOffset = U32(bytes, ref at, "BTF offset");
        uint btfSize = U32(bytes, ref at, "BTF size");
        if ((ulong)btfOffset + btfSize > MaxOffset || (btfSize == 0 && btfOffset != 0))
        {
            throw new VmStateFormatException(at - 8, S, $"BTF at offset 0x{btfOffset:x}, {btfSize} bytes: not within the {MaxOffset >> 20} MiB an image may have");
        }

        if (bytes.Length - at < 10)
        {
            throw new VmStateFormatException(at, S, "truncated before the modules head");
        }

        ulong modules = BinaryPrimitives.ReadUInt64LittleEndian(bytes[at..]);
        at += 8;
        int count = BinaryPrimitives.ReadUInt16LittleEndian(bytes[at..]);
        if (count > KernelLocationNote.MaxEvidence)
        {
            throw new VmStateFormatException(at, S, $"{count} evidence lines, more than {KernelLocationNote.MaxEvidence}");
        }

        at += 2;
        var evidence = new List<string>(count);
        for (int i = 0; i < count; i++)
        {
            evidence.Add(KernelLocationNote.ReadString(bytes, ref at, S) ?? throw new VmStateFormatException(at, S, $"evidence line {i} is missing"));
        }

        if (at != bytes.Length)
        {
            throw new VmStateFormatException(at, S, $"{bytes.Length - at} bytes after the last evidence line");
        }

        return new(text, source, bannerOffset, banner, btfOffset, btfSize, modules, evidence);
    }

    private static uint U32(ReadOnlySpan<byte> bytes, ref int at, string what)
    {
        if (bytes.Length - at < 4)
        {
            throw new VmStateFormatException(at, S, $"truncated before the {what}");
        }

        uint v = BinaryPrimitives.ReadUInt32LittleEndian(bytes[at..]);
        if (v >= MaxOffset)
        {
            throw new VmStateFormatException(at, S, $"{what} 0x{v:x} is beyond the {MaxOffset >> 20} MiB an image may have");
        }

        at += 4;
        return v;
    }
}
