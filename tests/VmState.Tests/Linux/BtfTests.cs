using System.Buffers.Binary;
using VmState.IO;
using VmState.Linux.Btf;

namespace VmState.Tests.Linux;

/// <summary>BTF blobs written in code with every kind, bitfields and anonymous members, parsed back; hostile blobs fail clearly.</summary>
public class BtfTests
{
    private sealed record Sample(byte[] Blob, Dictionary<string, int> Ids);

    /// <summary>A small kernel-like type graph; ids recorded by name for the assertions.</summary>
    private static Sample Build()
    {
        var w = new BtfWriter();
        var id = new Dictionary<string, int>();
        id["int"] = w.Int("int", 4, signed: true);
        id["uint"] = w.Int("unsigned int", 4);
        id["char"] = w.Int("char", 1, signed: true, isChar: true);
        id["ulong"] = w.Int("long unsigned int", 8);
        id["bool"] = w.Int("_Bool", 1, isBool: true);
        id["u64"] = w.Typedef("u64", id["ulong"]);
        int listHead = w.NextId;
        id["list_head"] = w.Struct("list_head", 16, ("next", listHead + 1, 0, 0), ("prev", listHead + 1, 64, 0));
        id["list_head*"] = w.Ptr(listHead);
        id["uid_t"] = w.Typedef("uid_t", id["uint"]);
        id["kuid_anon"] = w.Struct(string.Empty, 4, ("val", id["uid_t"], 0, 0));
        id["kuid_t"] = w.Typedef("kuid_t", id["kuid_anon"]);
        id["char[16]"] = w.Array(id["char"], id["int"], 16);
        id["lohi"] = w.Struct(string.Empty, 8, ("lo", id["uint"], 0, 0), ("hi", id["uint"], 32, 0));
        id["anon_union"] = w.Union(string.Empty, 8, ("a", id["u64"], 0, 0), (string.Empty, id["lohi"], 0, 0));
        int cred = w.NextId;
        id["cred"] = w.Struct("cred", 8, ("usage", id["int"], 0, 0), ("uid", id["kuid_t"], 32, 0));
        id["cred_t"] = w.Typedef("cred_t", cred);
        id["volatile"] = w.Volatile(id["cred_t"]);
        id["const"] = w.Const(id["volatile"]);
        id["cred*"] = w.Ptr(id["const"]);
        id["rcu"] = w.TypeTag("rcu", id["cred"]);
        id["rcu*"] = w.Ptr(id["rcu"]);
        id["task"] = w.Struct("task", 72,
            ("__state", id["uint"], 0, 0),
            ("flags", id["uint"], 32, 0),
            (string.Empty, id["anon_union"], 64, 0),
            ("tasks", id["list_head"], 128, 0),
            ("sched_reset_on_fork", id["uint"], 256, 1),
            ("sched_contributes_to_load", id["uint"], 257, 1),
            ("in_execve", id["uint"], 258, 2),
            ("comm", id["char[16]"], 320, 0),
            ("uid", id["kuid_t"], 448, 0),
            ("real_cred", id["cred*"], 512, 0));
        id["task_empty"] = w.Struct("task", 0);
        id["fwd"] = w.Fwd("later", union: true);
        id["signed_enum"] = w.Enum("sign", 4, signed: true, ("NEG", -5), ("POS", 7));
        id["unsigned_enum"] = w.Enum("flags_e", 4, signed: false, ("ALL", 0xFFFF_FFFF));
        id["enum64"] = w.Enum64("big", signed: false, ("HUGE", unchecked((long)0xF000_0000_0000_0001UL)));
        id["char*"] = w.Ptr(id["char"]);
        id["proto"] = w.FuncProto(0, ("x", id["int"]), ("s", id["char*"]));
        id["fn*"] = w.Ptr(id["proto"]);
        id["func"] = w.Func("do_it", id["proto"]);
        id["task*"] = w.Ptr(id["task"]);
        id["var"] = w.Var("current_task", id["task*"], 1);
        id["datasec"] = w.DataSec(".data..percpu", 0x20000, (id["var"], 0x1fb80, 8));
        id["double"] = w.Float("double", 8);
        id["decltag"] = w.DeclTag("user", id["task"], 2);
        id["restrict"] = w.Restrict(id["char*"]);
        id["const_ptr"] = w.Const(id["char*"]);
        id["ptr[4]"] = w.Array(id["char*"], id["int"], 4);
        return new Sample(w.Build(), id);
    }

    [Fact]
    public void EveryKindParsesWithItsTrailer()
    {
        Sample s = Build();
        BtfTypes b = BtfTypes.Parse(s.Blob);

        Assert.Equal(1, b.FirstId);
        Assert.Equal(s.Ids.Count, b.Count);
        Assert.Equal(24u, b.Header.HeaderLength);
        IReadOnlyDictionary<BtfKind, int> counts = b.KindCounts();
        foreach (BtfKind k in Enum.GetValues<BtfKind>().Where(k => k != BtfKind.Void))
        {
            Assert.True(counts.GetValueOrDefault(k) > 0, $"kind {k} missing from the sample");
        }

        BtfType i = b[s.Ids["char"]];
        Assert.Equal(new BtfIntEncoding(true, true, false, 0, 8), i.IntEncoding);
        Assert.Equal(new BtfArrayInfo(s.Ids["char"], s.Ids["int"], 16), b[s.Ids["char[16]"]].ArrayInfo);
        Assert.Equal([new BtfEnumValue("NEG", -5), new BtfEnumValue("POS", 7)], b[s.Ids["signed_enum"]].EnumValues);
        Assert.True(b[s.Ids["signed_enum"]].IsSignedEnum);
        Assert.Equal(0xFFFF_FFFFL, b[s.Ids["unsigned_enum"]].EnumValues[0].Value);
        Assert.Equal(0xF000_0000_0000_0001UL, (ulong)b[s.Ids["enum64"]].EnumValues[0].Value);
        Assert.Equal([new BtfParameter("x", s.Ids["int"]), new BtfParameter("s", s.Ids["char*"])], b[s.Ids["proto"]].Parameters);
        Assert.Equal(1u, b[s.Ids["func"]].Linkage);
        Assert.Equal([new BtfSectionVariable(s.Ids["var"], 0x1fb80, 8)], b[s.Ids["datasec"]].Variables);
        Assert.Equal(2, b[s.Ids["decltag"]].ComponentIndex);
        Assert.True(b[s.Ids["fwd"]].KindFlag);
        Assert.Equal(BtfKind.TypeTag, b.KindOf(s.Ids["rcu"]));
        Assert.Equal("rcu", b[s.Ids["rcu"]].Name);
        Assert.Equal(BtfKind.Void, b[0].Kind);
    }

    [Fact]
    public void NamesIndexPrefersCompleteDefinitions()
    {
        Sample s = Build();
        BtfTypes b = BtfTypes.Parse(s.Blob);

        Assert.Equal(s.Ids["task"], b.FindStruct("task"));
        Assert.Equal(s.Ids["list_head"], b.Find("list_head", BtfKind.Struct));
        Assert.Equal(s.Ids["u64"], b.Find("u64", BtfKind.Typedef));
        Assert.Equal(s.Ids["func"], b.Find("do_it", BtfKind.Function));
        Assert.Equal(s.Ids["var"], b.Find("current_task", BtfKind.Variable));
        Assert.Equal(s.Ids["signed_enum"], b.Find("sign", BtfKind.Enum));
        Assert.Equal(s.Ids["enum64"], b.Find("big", BtfKind.Enum));
        Assert.Equal(0, b.FindStruct("later"));
        Assert.True(b.TryGetEnumerator("NEG", out long neg));
        Assert.Equal(-5, neg);
        Assert.False(b.TryGetEnumerator("NOPE", out _));
    }

    [Fact]
    public void SizesResolveThroughTypedefsQualifiersAndArrays()
    {
        Sample s = Build();
        BtfTypes b = BtfTypes.Parse(s.Blob);

        Assert.Equal(8UL, b.SizeOf(s.Ids["u64"]));
        Assert.Equal(8UL, b.SizeOf(s.Ids["const"]));
        Assert.Equal(BtfKind.Struct, b.Resolve(s.Ids["const"]).Kind);
        Assert.Equal(16UL, b.SizeOf(s.Ids["char[16]"]));
        Assert.Equal(32UL, b.SizeOf(s.Ids["ptr[4]"]));
        Assert.Equal(72UL, b.SizeOf(s.Ids["task"]));
        Assert.Equal(8UL, b.SizeOf(s.Ids["var"]));
        Assert.Throws<ArgumentException>(() => b.SizeOf(0));
        Assert.Throws<ArgumentException>(() => b.SizeOf(s.Ids["proto"]));
    }

    [Fact]
    public void MemberPathsGoThroughAnonymousMembersBitfieldsAndIndices()
    {
        Sample s = Build();
        BtfTypes b = BtfTypes.Parse(s.Blob);
        int task = s.Ids["task"];

        Assert.Equal(4UL, b.Member(task, "flags").ByteOffset);
        Assert.Equal(8UL, b.Member(task, "a").ByteOffset);
        Assert.Equal(8UL, b.Member(task, "lo").ByteOffset);
        Assert.Equal(12UL, b.Member(task, "hi").ByteOffset);
        Assert.Equal(s.Ids["uint"], b.Member(task, "hi").TypeId);
        Assert.Equal(24UL, b.Member(task, "tasks.prev").ByteOffset);
        Assert.Equal(s.Ids["list_head*"], b.Member(task, "tasks.prev").TypeId);
        Assert.Equal(new BtfMemberLocation(258, s.Ids["uint"], 2), b.Member(task, "in_execve"));
        Assert.True(b.Member(task, "sched_contributes_to_load").IsBitfield);
        Assert.Equal(43UL, b.Member(task, "comm[3]").ByteOffset);
        Assert.Equal(56UL, b.Member(task, "uid.val").ByteOffset);
        Assert.Null(b.FindMember(task, "nope"));
        Assert.Null(b.FindMember(task, "tasks.nope"));
        Assert.Throws<ArgumentException>(() => b.FindMember(task, "comm[16]"));
        Assert.Throws<ArgumentException>(() => b.FindMember(task, "real_cred.uid"));
        Assert.Throws<ArgumentException>(() => b.FindMember(task, "flags..x"));
        Assert.Throws<ArgumentException>(() => b.Member(task, "nope"));
    }

    [Fact]
    public void CSpellingsOfTypesAndDeclarations()
    {
        Sample s = Build();
        BtfTypes b = BtfTypes.Parse(s.Blob);

        Assert.Equal("struct list_head *", b.TypeName(s.Ids["list_head*"]));
        Assert.Equal("char comm[16]", b.Declaration(s.Ids["char[16]"], "comm"));
        Assert.Equal("const volatile cred_t *real_cred", b.Declaration(s.Ids["cred*"], "real_cred"));
        Assert.Equal("void (*fn)(int x, char *s)", b.Declaration(s.Ids["fn*"], "fn"));
        Assert.Equal("char *const p", b.Declaration(s.Ids["const_ptr"], "p"));
        Assert.Equal("char *restrict p", b.Declaration(s.Ids["restrict"], "p"));
        Assert.Equal("char *v[4]", b.Declaration(s.Ids["ptr[4]"], "v"));
        Assert.Equal("struct cred *", b.TypeName(s.Ids["rcu*"]));
        Assert.Equal("union {...}", b.TypeName(s.Ids["anon_union"]));
        Assert.Equal("union later", b.TypeName(s.Ids["fwd"]));
        Assert.Equal("enum big", b.TypeName(s.Ids["enum64"]));
    }

    [Fact]
    public void TypeSpellingsAreParsedAndPointerAndArrayTypesMadeOnTheFly()
    {
        Sample s = Build();
        BtfTypes b = BtfTypes.Parse(s.Blob);

        Assert.Equal(s.Ids["task"], b.FindType("struct task"));
        Assert.Equal(s.Ids["ulong"], b.FindType("unsigned long"));
        Assert.Equal(s.Ids["u64"], b.FindType(" u64 "));
        int p = b.FindType("struct task *");
        Assert.True(p >= BtfTypes.SyntheticIdBase);
        Assert.Equal(p, b.FindType("struct task*"));
        Assert.Equal(s.Ids["task"], b[p].ReferencedType);
        int arr = b.FindType("unsigned long [4]");
        Assert.Equal(32UL, b.SizeOf(arr));
        Assert.Equal("long unsigned int [4]", b.TypeName(arr));
        int pp = b.FindType("char *[2]");
        Assert.Equal("char *[2]", b.TypeName(pp));
        Assert.Equal(16UL, b.SizeOf(pp));
        Assert.Equal(0, b.FindType("void"));
        VmStateNotFoundException missing = Assert.Throws<VmStateNotFoundException>(() => b.FindType("struct nope"));
        Assert.Equal((VmStateObjectKind.Type, "struct nope"), (missing.Kind, missing.Name));
        Assert.Equal("nope_t", Assert.Throws<VmStateNotFoundException>(() => b.FindType("nope_t *")).Name);
    }

    [Fact]
    public void SplitBtfContinuesTheBasesIdsAndStrings()
    {
        Sample s = Build();
        BtfTypes vmlinux = BtfTypes.Parse(s.Blob);
        var w = new BtfWriter(vmlinux.NextId, (uint)vmlinux.Header.StringLength);
        int mod = w.Struct("module_thing", 24, ("list", s.Ids["list_head"], 0, 0), ("owner", s.Ids["int"], 128, 0));
        int ptr = w.Ptr(mod);

        BtfTypes split = BtfTypes.Parse(w.Build(), vmlinux);

        Assert.Equal(vmlinux.NextId, split.FirstId);
        Assert.Equal(mod, split.FindStruct("module_thing"));
        Assert.Equal(s.Ids["task"], split.FindStruct("task"));
        Assert.Equal(8UL, split.Member(mod, "list.prev").ByteOffset);
        Assert.Equal("struct module_thing *", split.TypeName(ptr));
        Assert.Equal("list", split[mod].Members[0].Name);
        Assert.Equal("list_head", split[s.Ids["list_head"]].Name);
        Assert.Equal(vmlinux.StringAt(1), split.StringAt(1));
        Assert.Throws<VmStateFormatException>(() => split.StringAt(vmlinux.StringBase + (uint)vmlinux.Header.StringLength + 10_000));
    }

    [Fact]
    public void HostileHeadersFailWithTheirOffset()
    {
        byte[] good = Build().Blob;
        (int Offset, Action<byte[]> Damage, string Text)[] cases =
        [
            (0, b => BinaryPrimitives.WriteUInt16LittleEndian(b, 0x1234), "magic 0x1234"),
            (0, b => BinaryPrimitives.WriteUInt16LittleEndian(b, 0x9FEB), "big-endian"),
            (2, b => b[2] = 2, "version 2"),
            (4, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), 0xFFFF), "hdr_len"),
            (8, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), 0x7FFF_FFF0), "runs past"),
        ];
        foreach ((int offset, Action<byte[]> damage, string text) in cases)
        {
            byte[] b = (byte[])good.Clone();
            damage(b);
            VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => BtfTypes.Parse(b));
            Assert.Equal(offset, e.Offset);
            Assert.Contains(text, e.Message, StringComparison.Ordinal);
        }

        Assert.Throws<VmStateFormatException>(() => BtfTypes.Parse(new byte[10]));
    }

    [Fact]
    public void UnknownKindsReservedBitsAndTruncatedRecordsFail()
    {
        var w = new BtfWriter();
        w.Int("int", 4, signed: true);
        w.Raw(0, 20u << 24, 0);
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => BtfTypes.Parse(w.Build()));
        Assert.Equal(24 + 16 + 4, e.Offset);
        Assert.Contains("unknown kind 20", e.Message, StringComparison.Ordinal);

        w = new BtfWriter();
        w.Raw(0, (2u << 24) | 0x0001_0000, 0);
        Assert.Contains("bits outside", Assert.Throws<VmStateFormatException>(() => BtfTypes.Parse(w.Build())).Message, StringComparison.Ordinal);

        // A struct claiming 1000 members with none following.
        w = new BtfWriter();
        w.Raw(w.Str("big"), (4u << 24) | 1000, 8);
        Assert.Contains("vlen 1000", Assert.Throws<VmStateFormatException>(() => BtfTypes.Parse(w.Build())).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadReferencesAndLoopsFailInsteadOfHanging()
    {
        var w = new BtfWriter();
        int a = w.NextId;
        w.Typedef("a_t", a + 1);
        w.Typedef("b_t", a);
        w.Ptr(999);
        w.Struct("self", 8, (string.Empty, a + 3, 0, 0));
        w.Struct("outside", 4, ("x", a, 64, 0));
        BtfTypes b = BtfTypes.Parse(w.Build());

        Assert.Contains("chain longer", Assert.Throws<VmStateFormatException>(() => b.Resolve(a)).Message, StringComparison.Ordinal);
        Assert.Throws<VmStateFormatException>(() => b.SizeOf(a));
        Assert.Contains("type id 999", Assert.Throws<VmStateFormatException>(() => b.Get(a + 2)).Message, StringComparison.Ordinal);
        Assert.Contains("nested deeper", Assert.Throws<VmStateFormatException>(() => b.FindMember(a + 3, "x")).Message, StringComparison.Ordinal);
        Assert.Contains("outside", Assert.Throws<VmStateFormatException>(() => b.Get(a + 4)).Message, StringComparison.Ordinal);
        Assert.Throws<VmStateFormatException>(() => b.Get(12345));
    }

    [Fact]
    public void LimitsCapTheTypeCountAndBlobSize()
    {
        byte[] blob = Build().Blob;

        Assert.Contains("more than 5 types", Assert.Throws<VmStateFormatException>(() => BtfTypes.Parse(blob, limits: new BtfLimits { MaxTypes = 5 })).Message, StringComparison.Ordinal);
        Assert.Throws<VmStateFormatException>(() => BtfTypes.Parse(blob, limits: new BtfLimits { MaxBlobSize = 100 }));
    }

    [Fact]
    public void StringOffsetsOutsideTheSectionFail()
    {
        var w = new BtfWriter();
        w.Raw(0x7000_0000, 1u << 24, 4, 32);
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => BtfTypes.Parse(w.Build()).Get(1));
        Assert.Contains("string offset", e.Message, StringComparison.Ordinal);
    }
}
