using System.Globalization;
using VmState.Arch.X86;
using VmState.Linux;
using VmState.Tests.Support;

namespace VmState.Tests.Linux;

/// <summary>
/// Symbol tables encoded in code in the kernel's kallsyms format (every table order and address encoding), placed
/// among junk and a UTF-16 decoy, then found and decoded back: every name, type and address must come back.
/// </summary>
public class KallsymsTests
{
    private const ulong Text = 0xffffffff81000000UL + 0x2a00000;
    private const int TablesAt = 0x30000;

    /// <summary>"0\0" .. "9\0" followed by ":\0": what a UTF-16LE run of ASCII looks like; must be rejected.</summary>
    private static readonly byte[] s_decoy = [.. "0\01\02\03\04\05\06\07\08\09\0:\0;\0"u8];

    public static TheoryData<KallsymsAddressEncoding, KallsymsOrder> Layouts() => new()
    {
        { KallsymsAddressEncoding.AbsolutePercpu, KallsymsOrder.Pre64 },
        { KallsymsAddressEncoding.AbsolutePercpu, KallsymsOrder.Post64 },
        { KallsymsAddressEncoding.BaseRelative, KallsymsOrder.Pre64 },
        { KallsymsAddressEncoding.BaseRelative, KallsymsOrder.Post64 },
        { KallsymsAddressEncoding.Absolute, KallsymsOrder.Pre64 },
        { KallsymsAddressEncoding.Absolute, KallsymsOrder.Post64 },
        { KallsymsAddressEncoding.PlaceRelative, KallsymsOrder.Post64 },
    };

    private static (byte[] Image, KallsymsWriter Writer) Image(KallsymsAddressEncoding encoding, KallsymsOrder order, int count, bool bigLengths = true, int seed = 1)
    {
        List<(string, char, ulong)> symbols = KallsymsWriter.SampleSymbols(Text, count, seed, percpu: encoding == KallsymsAddressEncoding.AbsolutePercpu, longNameLength: bigLengths ? 320 : 200);
        var w = new KallsymsWriter(symbols, encoding, order, Text, bigLengths);
        byte[] tables = w.Build(Text + TablesAt);
        byte[] image = new byte[TablesAt + tables.Length + 0x10000];
        new Random(seed).NextBytes(image);
        s_decoy.CopyTo(image, 0x1000);
        tables.CopyTo(image, TablesAt);
        return (image, w);
    }

    private static void AssertSame(KallsymsWriter w, Kallsyms k)
    {
        Assert.Equal(w.Symbols.Count, k.Count);
        for (int i = 0; i < k.Count; i++)
        {
            (string name, char type, ulong address) = w.Symbols[i];
            KernelSymbol s = k[i];
            Assert.Equal(name, s.Name);
            Assert.Equal(type, s.Type);
            Assert.Equal(address, s.Address);
        }
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void ScanFindsAndDecodesEveryLayoutAndEncoding(KallsymsAddressEncoding encoding, KallsymsOrder order)
    {
        (byte[] image, KallsymsWriter w) = Image(encoding, order, 700);
        Assert.True(w.LongRecords > 0, "the sample must exercise 2-byte record lengths");

        Kallsyms k = Kallsyms.Scan(image, Text, imageIsVirtual: true, "_text", Text);

        AssertSame(w, k);
        Assert.Equal(encoding, k.Layout.Encoding);
        Assert.True(k.Layout.BigLengths);
        Assert.Equal(order == KallsymsOrder.Post64 ? "6.4+" : "pre-6.4", k.Layout.Order);
        Assert.Equal(w.Labels["kallsyms_num_syms"], k.Layout.NumSyms);
        Assert.Equal(w.Labels["kallsyms_names"], k.Layout.Names);
        Assert.Equal(w.Labels["kallsyms_markers"], k.Layout.Markers);
        Assert.Equal(w.Labels["kallsyms_token_table"], k.Layout.TokenTable);
        Assert.Equal(w.Labels["kallsyms_token_index"], k.Layout.TokenIndex);
        Assert.Equal(w.Labels.GetValueOrDefault("kallsyms_offsets", w.Labels.GetValueOrDefault("kallsyms_addresses")), k.Layout.AddressTable);
        Assert.Equal(w.Labels.TryGetValue("kallsyms_relative_base", out ulong rb) ? rb : null, k.Layout.RelativeBaseAddress);
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void WithoutAKnownStartTheEncodingIsChosenBySortednessAndRelativeBase(KallsymsAddressEncoding encoding, KallsymsOrder order)
    {
        (byte[] image, KallsymsWriter w) = Image(encoding, order, 400, seed: 7);

        Kallsyms k = Kallsyms.Scan(image, Text, imageIsVirtual: true, null, null);

        Assert.Equal(encoding, k.Layout.Encoding);
        AssertSame(w, k);
    }

    [Fact]
    public void SeqsOfNamesBetweenMarkersAndTokenTableIsFound()
    {
        // The Debian 6.1.y layout: more than 8 markers (2048+ symbols) and a 3-byte-per-symbol table before the tokens.
        (byte[] image, KallsymsWriter w) = Image(KallsymsAddressEncoding.AbsolutePercpu, KallsymsOrder.Pre64WithSeqs, 2300, seed: 3);

        Kallsyms k = Kallsyms.Scan(image, Text, imageIsVirtual: true, "_text", Text);

        AssertSame(w, k);
        Assert.Equal(w.Labels["kallsyms_seqs_of_names"], k.Layout.SeqsOfNames);
        Assert.Equal(w.Labels["kallsyms_markers"], k.Layout.Markers);
    }

    [Fact]
    public void PreBigLengthTablesWithALengthByteAbove127DecodeWithOneByteLengths()
    {
        // Before 6.1 a length byte ≥ 0x80 is literal; read as ULEB128 it would break the markers check.
        (byte[] image, KallsymsWriter w) = Image(KallsymsAddressEncoding.BaseRelative, KallsymsOrder.Pre64, 300, bigLengths: false, seed: 5);
        Assert.True(w.LongRecords > 0);

        Kallsyms k = Kallsyms.Scan(image, Text, imageIsVirtual: true, "_text", Text);

        Assert.False(k.Layout.BigLengths);
        AssertSame(w, k);
    }

    [Fact]
    public void TablesFromVmcoreinfoAddressesDecodeThroughPageTables()
    {
        (byte[] image, KallsymsWriter w) = Image(KallsymsAddressEncoding.AbsolutePercpu, KallsymsOrder.Pre64WithSeqs, 500, seed: 11);
        var pt = new PageTableBuilder(PagingMode.Level4, memorySize: 64 << 20);
        const ulong Pa = 0x1000000;
        for (ulong off = 0; off < (ulong)image.Length; off += 0x1000)
        {
            pt.Map(Text + off, Pa + off, 0x1000, user: false);
        }

        pt.WritePhysical(Pa, image);
        var space = new AddressSpace(pt, PagingMode.Level4, pt.Root);
        string text = string.Join("\n", w.Labels.Where(l => l.Key != "kallsyms_markers" && l.Key != "kallsyms_seqs_of_names")
            .Select(l => $"SYMBOL({l.Key})={l.Value.ToString("x", CultureInfo.InvariantCulture)}")) + "\nOSRELEASE=6.1.0-test\n";

        Kallsyms? k = Kallsyms.FromVmcoreinfo(space, Vmcoreinfo.Parse(text), "_stext", Text);

        Assert.NotNull(k);
        Assert.Equal("VMCOREINFO", k.Layout.Source);
        Assert.Equal(KallsymsAddressEncoding.AbsolutePercpu, k.Layout.Encoding);
        Assert.Equal(w.Labels["kallsyms_markers"], k.Layout.Markers);
        AssertSame(w, k);
        Assert.Null(Kallsyms.FromVmcoreinfo(space, Vmcoreinfo.Parse("OSRELEASE=5.10.0\n"), "_stext", Text));
    }

    [Fact]
    public void LookupsByNameAndAddress()
    {
        ulong t = Text;
        var symbols = new List<(string, char, ulong)>
        {
            ("_text", 'T', t), ("_stext", 'T', t), ("start_kernel", 'T', t + 0x100), ("dup", 't', t + 0x200), ("dup", 'T', t + 0x300),
            ("dup", 't', t + 0x400), ("current_task", 'A', 0x1fb80), ("init_task", 'D', t + 0x10000), ("x0123456789", 'r', t + 0x20000),
        };
        for (int i = 0; i < 300; i++)
        {
            symbols.Add(($"filler_{i}", 't', t + 0x30000 + ((ulong)i * 0x10)));
        }

        var w = new KallsymsWriter(symbols, KallsymsAddressEncoding.AbsolutePercpu, KallsymsOrder.Pre64, t);
        byte[] tables = w.Build(t);
        Kallsyms k = Kallsyms.Scan(tables, t, imageIsVirtual: true, "_text", t);

        Assert.Equal(t + 0x10000, k.AddressOf("init_task"));
        Assert.Equal(0x1fb80UL, k.AddressOf("current_task"));
        Assert.Equal('A', k.Find("current_task")!.Value.Type);
        Assert.Equal(t + 0x300, k.AddressOf("dup"));
        Assert.Equal([t + 0x200, t + 0x300, t + 0x400], k.FindAll("dup").Select(s => s.Address));
        Assert.False(k.TryGetAddress("no_such_symbol", out _));
        Assert.False(k.TryGetAddress("名前", out _));
        KernelDataException e = Assert.Throws<KernelDataException>(() => k.AddressOf("no_such_symbol"));
        Assert.Contains("no_such_symbol", e.Message, StringComparison.Ordinal);

        Assert.True(k.TrySymbolize(t + 0x10008, out KernelSymbol s, out ulong off));
        Assert.Equal(("init_task", 8UL), (s.Name, off));
        Assert.Equal("_stext", k.Describe(t)); // the first of the symbols at that address in table order
        Assert.Equal("start_kernel+0x10", k.Describe(t + 0x110));
        Assert.False(k.TrySymbolize(0x10, out _, out _));
        Assert.Equal(symbols.Count, k.Count());
    }

    [Fact]
    public void CorruptMarkersAreRejected()
    {
        (byte[] image, KallsymsWriter w) = Image(KallsymsAddressEncoding.AbsolutePercpu, KallsymsOrder.Pre64, 700);
        int markers = (int)(w.Labels["kallsyms_markers"] - Text);
        image[markers + 4] ^= 0x01;

        KernelDataException e = Assert.Throws<KernelDataException>(() => Kallsyms.Scan(image, Text, imageIsVirtual: true, "_text", Text));
        Assert.Contains("no kallsyms tables found", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AWrongKnownStartRejectsEveryEncoding()
    {
        (byte[] image, _) = Image(KallsymsAddressEncoding.BaseRelative, KallsymsOrder.Pre64, 300);

        KernelDataException e = Assert.Throws<KernelDataException>(() => Kallsyms.Scan(image, Text, imageIsVirtual: true, "_text", Text + 0x200000));
        Assert.Contains("no address encoding fits", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NoTablesGivesAClearError()
    {
        byte[] junk = new byte[1 << 16];
        new Random(2).NextBytes(junk);
        s_decoy.CopyTo(junk, 100);

        KernelDataException e = Assert.Throws<KernelDataException>(() => Kallsyms.Scan(junk, Text, imageIsVirtual: true, null, null));
        Assert.Contains("1 continuing like a UTF-16", e.Message, StringComparison.Ordinal);
    }
}
