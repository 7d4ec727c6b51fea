using System.Buffers.Binary;
using System.Text;
using VmState.IO;
using VmState.Linux;

namespace VmState.Tests.Linux;

public class VmcoreinfoTests
{
    // Shaped like the Debian 6.1 guest's note (Documentation/admin-guide/kdump/vmcoreinfo.rst keys).
    private const string Sample =
        "OSRELEASE=6.1.0-56-amd64\n" +
        "BUILD-ID=eb4fbcd037e7253717950bf2b93bd5566f47c56f\n" +
        "PAGESIZE=4096\n" +
        "SYMBOL(init_uts_ns)=ffffffff963fb000\n" +
        "OFFSET(uts_namespace.name)=0\n" +
        "SIZE(page)=64\n" +
        "LENGTH(zone.free_area)=11\n" +
        "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n" +
        "SYMBOL(kallsyms_names)=ffffffff959bdac0\n" +
        "NUMBER(phys_base)=-260046848\n" +
        "SYMBOL(init_top_pgt)=ffffffff96210000\n" +
        "NUMBER(pgtable_l5_enabled)=0\n" +
        "KERNELOFFSET=13800000\n" +
        "PAGESIZE=4096\n" +
        "not a key value line\n" +
        "CRASHTIME=1700000000\n";

    [Fact]
    public void TypedAccessorsParseEachValueKind()
    {
        Vmcoreinfo v = Vmcoreinfo.Parse(Sample);

        Assert.Equal("6.1.0-56-amd64", v.OsRelease);
        Assert.Equal("eb4fbcd037e7253717950bf2b93bd5566f47c56f", v.BuildId);
        Assert.Equal(4096, v.PageSize);
        Assert.Equal(0xffffffff963fb000UL, v.Symbol("init_uts_ns"));
        Assert.Equal(0L, v.Offset("uts_namespace.name"));
        Assert.Equal(64L, v.Size("page"));
        Assert.Equal(11L, v.Length("zone.free_area"));
        Assert.Equal(-129L, v.Number("PAGE_BUDDY_MAPCOUNT_VALUE"));
        Assert.Equal(-0xF800000L, v.PhysBase);
        Assert.Equal(0x13800000UL, v.KernelOffset);
        Assert.False(v.FiveLevelPaging);
        Assert.Equal(1700000000L, v.CrashTime);
        Assert.Equal(14, v.Count);
        Assert.Null(v.Symbol("kallsyms_offsets"));
        Assert.Null(v.Number("nope"));
        Assert.True(v.Contains("SYMBOL(init_top_pgt)"));
    }

    [Fact]
    public void FromNoteReadsTheDescriptorOfTheElfNote()
    {
        byte[] desc = Encoding.ASCII.GetBytes(Sample);
        byte[] note = new byte[24 + ((desc.Length + 3) & ~3)];
        BinaryPrimitives.WriteUInt32LittleEndian(note, 11);
        BinaryPrimitives.WriteUInt32LittleEndian(note.AsSpan(4), (uint)desc.Length);
        "VMCOREINFO\0"u8.CopyTo(note.AsSpan(12));
        desc.CopyTo(note, 24);

        Vmcoreinfo v = Vmcoreinfo.FromNote(note);

        Assert.Equal(0xffffffff96210000UL, v.Symbol("init_top_pgt"));
        Assert.Throws<VmStateFormatException>(() => Vmcoreinfo.FromNote(new byte[10]));
    }

    [Theory]
    [InlineData("SYMBOL(x)=zz12\n", "SYMBOL(x)")]
    [InlineData("SYMBOL(x)=\n", "SYMBOL(x)")]
    [InlineData("SYMBOL(x)=1ffffffffffffffff\n", "SYMBOL(x)")]
    [InlineData("NUMBER(x)=12a\n", "NUMBER(x)")]
    [InlineData("NUMBER(x)=-\n", "NUMBER(x)")]
    [InlineData("NUMBER(x)=99999999999999999999\n", "NUMBER(x)")]
    public void MalformedValuesThrowNamingTheLineOffset(string line, string key)
    {
        Vmcoreinfo v = Vmcoreinfo.Parse("OSRELEASE=6.1\n" + line);

        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => key.StartsWith("SYMBOL", StringComparison.Ordinal) ? v.Symbol("x") : v.Number("x"));
        Assert.Equal(14, e.Offset);
        Assert.Contains(key, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FiveLevelFlagAndHexNumbers()
    {
        Vmcoreinfo v = Vmcoreinfo.Parse("NUMBER(pgtable_l5_enabled)=1\r\nNUMBER(h)=0x10\nNUMBER(n)=-0x10\nKERNELOFFSET=0x2000000\n");

        Assert.True(v.FiveLevelPaging);
        Assert.Equal(16L, v.Number("h"));
        Assert.Equal(-16L, v.Number("n"));
        Assert.Equal(0x2000000UL, v.KernelOffset);
    }
}
