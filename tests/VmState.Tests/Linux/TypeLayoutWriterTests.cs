using VmState.Linux.Btf;

namespace VmState.Tests.Linux;

public class TypeLayoutWriterTests
{
    [Fact]
    public void StructLayoutShowsOffsetsHolesBitfieldsAnonymousMembersAndPadding()
    {
        var w = new BtfWriter();
        int u32 = w.Int("unsigned int", 4);
        int u64 = w.Int("long long unsigned int", 8);
        int ch = w.Int("char", 1, signed: true, isChar: true);
        int comm = w.Array(ch, u32, 16);
        int anon = w.Union(string.Empty, 8, ("whole", u64, 0, 0), ("half", u32, 0, 0));
        int s = w.Struct("sample", 48,
            ("state", u32, 0, 0),
            (string.Empty, anon, 64, 0),
            ("a", u32, 128, 1),
            ("b", u32, 129, 3),
            ("comm", comm, 192, 0));
        int td = w.Typedef("sample_t", s);
        BtfTypes b = BtfTypes.Parse(w.Build());

        string text = TypeLayoutWriter.Format(b, td);

        string[] lines = text.Split('\n');
        Assert.Equal("typedef struct sample sample_t;", lines[0]);
        Assert.Equal("struct sample {", lines[2]);
        Assert.Matches(@"^    unsigned int state; +/\*     0     4 \*/$", lines[3]);
        Assert.Equal("    /* XXX 4 bytes hole */", lines[4]);
        Assert.Equal("    union {", lines[5]);
        Assert.Matches(@"^        long long unsigned int whole; +/\*     8     8 \*/$", lines[6]);
        Assert.Matches(@"^        unsigned int half; +/\*     8     4 \*/$", lines[7]);
        Assert.Matches(@"^    }; +/\*     8     8 \*/$", lines[8]);
        Assert.Matches(@"^    unsigned int a:1; +/\*    16: 0    4 \*/$", lines[9]);
        Assert.Matches(@"^    unsigned int b:3; +/\*    16: 1    4 \*/$", lines[10]);
        Assert.Equal("    /* XXX 4 bits hole */", lines[11]);
        Assert.Equal("    /* XXX 7 bytes hole */", lines[12]);
        Assert.Matches(@"^    char comm\[16\]; +/\*    24    16 \*/$", lines[13]);
        Assert.Equal("    /* padding: 8 */", lines[14]);
        Assert.Equal("    /* size: 48, cachelines: 1, members: 5 */", lines[16]);
        Assert.Equal("};", lines[18]);
    }

    [Fact]
    public void EnumsAndOtherTypes()
    {
        var w = new BtfWriter();
        int e = w.Enum("pid_type", 4, signed: false, ("PIDTYPE_PID", 0), ("PIDTYPE_MAX", 4));
        int i = w.Int("int", 4, signed: true);
        int p = w.Ptr(i);
        BtfTypes b = BtfTypes.Parse(w.Build());

        Assert.Equal("enum pid_type {\n    PIDTYPE_PID = 0,\n    PIDTYPE_MAX = 4,\n};\n/* size: 4 */\n", TypeLayoutWriter.Format(b, e));
        Assert.Equal("int *;\n/* size: 8 */\n", TypeLayoutWriter.Format(b, p));
    }
}
