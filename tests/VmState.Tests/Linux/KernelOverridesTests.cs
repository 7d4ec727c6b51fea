using System.Buffers.Binary;
using System.Text;
using VmState.Linux;

namespace VmState.Tests.Linux;

public sealed class KernelOverridesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-overrides-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] SmallBtf()
    {
        var w = new BtfWriter();
        int i = w.Int("int", 4, signed: true);
        w.Struct("task_struct", 8, ("pid", i, 0, 0), ("tgid", i, 32, 0));
        return w.Build();
    }

    /// <summary>An ELF64 file with a null section, .text, .BTF and .shstrtab (as in a vmlinux, minus the rest).</summary>
    private static byte[] Elf(byte[] btf)
    {
        byte[] names = Encoding.ASCII.GetBytes("\0.text\0.BTF\0.shstrtab\0");
        int btfAt = 0x100, namesAt = btfAt + btf.Length, shoff = (namesAt + names.Length + 7) & ~7;
        byte[] f = new byte[shoff + (4 * 64)];
        "\x7fELF"u8.CopyTo(f);
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(16), 2);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(18), 62);
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(40), (ulong)shoff);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(52), 64);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(58), 64);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(60), 4);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(62), 3);
        btf.CopyTo(f, btfAt);
        names.CopyTo(f, namesAt);
        void Section(int index, uint name, int offset, int size)
        {
            Span<byte> s = f.AsSpan(shoff + (index * 64), 64);
            BinaryPrimitives.WriteUInt32LittleEndian(s, name);
            BinaryPrimitives.WriteUInt32LittleEndian(s[4..], 1);
            BinaryPrimitives.WriteUInt64LittleEndian(s[24..], (ulong)offset);
            BinaryPrimitives.WriteUInt64LittleEndian(s[32..], (ulong)size);
        }

        Section(1, 1, 0x40, 0);
        Section(2, 7, btfAt, btf.Length);
        Section(3, 12, namesAt, names.Length);
        return f;
    }

    [Fact]
    public void TheBtfSectionOfAVmlinuxAndARawBtfFileGiveTheSameBytes()
    {
        byte[] btf = SmallBtf();
        string elf = Path.Combine(_dir, "vmlinux");
        string raw = Path.Combine(_dir, "vmlinux.btf");
        File.WriteAllBytes(elf, Elf(btf));
        File.WriteAllBytes(raw, btf);

        (byte[] fromElf, string where) = KernelOverrides.ReadBtf(elf);
        Assert.Equal(btf, fromElf);
        Assert.StartsWith(".BTF section", where, StringComparison.Ordinal);
        Assert.Equal(btf, KernelOverrides.ReadBtf(raw).Blob);
    }

    [Fact]
    public void FilesWithoutBtfAreRefusedByName()
    {
        string notElf = Path.Combine(_dir, "junk");
        File.WriteAllBytes(notElf, new byte[100]);
        Assert.Contains("neither raw BTF", Assert.Throws<KernelDataException>(() => KernelOverrides.ReadBtf(notElf)).Message, StringComparison.Ordinal);

        // The same ELF with the section renamed .BTX.
        byte[] elf = Elf(SmallBtf());
        int nameAt = Array.IndexOf(elf, (byte)'B', 0x100 + SmallBtf().Length);
        elf[nameAt + 2] = (byte)'X';
        string noBtf = Path.Combine(_dir, "vmlinux-nobtf");
        File.WriteAllBytes(noBtf, elf);
        Assert.Contains("without a .BTF section", Assert.Throws<KernelDataException>(() => KernelOverrides.ReadBtf(noBtf)).Message, StringComparison.Ordinal);

        byte[] truncated = Elf(SmallBtf())[..0x80];
        string cut = Path.Combine(_dir, "vmlinux-cut");
        File.WriteAllBytes(cut, truncated);
        Assert.Contains("section header table", Assert.Throws<KernelDataException>(() => KernelOverrides.ReadBtf(cut)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SystemMapIsMovedByTheSlideExceptPerCpuAndAbsoluteSymbols()
    {
        string map = Path.Combine(_dir, "System.map");
        File.WriteAllLines(map,
        [
            "000000000001f9c0 D current_task",
            "0000000000000000 A VDSO32_PRELINK",
            "ffffffff81000000 T _text",
            "ffffffff82000100 D linux_banner",
        ]);
        (Kallsyms k, long slide) = KernelOverrides.ReadSystemMap(map, 0xffffffff9a000000UL);
        Assert.Equal(0x19000000, slide);
        Assert.Equal(0x1f9c0UL, k.AddressOf("current_task"));
        Assert.Equal(0UL, k.AddressOf("VDSO32_PRELINK"));
        Assert.Equal(0xffffffff9a000000UL, k.AddressOf("_text"));
        Assert.Equal(0xffffffff9b000100UL, k.AddressOf("linux_banner"));
        Assert.Equal('D', k.Find("linux_banner")!.Value.Type);
    }

    [Fact]
    public void DebiansPlaceholderSystemMapIsNamedAsSuch()
    {
        string map = Path.Combine(_dir, "System.map-6.1.0-56-amd64");
        File.WriteAllText(map, "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n");
        KernelDataException e = Assert.Throws<KernelDataException>(() => KernelOverrides.ReadSystemMap(map, 0xffffffff81000000UL));
        Assert.Contains("-dbg package", e.Message, StringComparison.Ordinal);

        File.WriteAllText(map, "not a map\n");
        Assert.Contains("line 1", Assert.Throws<KernelDataException>(() => KernelOverrides.ReadSystemMap(map, 0)).Message, StringComparison.Ordinal);
    }
}
