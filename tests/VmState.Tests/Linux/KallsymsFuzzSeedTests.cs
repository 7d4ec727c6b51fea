using VmState.Linux;

namespace VmState.Tests.Linux;

/// <summary>
/// The kallsyms fuzz target's seed (fuzz/corpus/kallsyms/tables-base-relative.bin) is a real table, so AFL starts
/// from inputs the scan accepts. The seed is made here; <c>VMSTATE_WRITE_FUZZ_SEEDS=1</c> rewrites it.
/// </summary>
public sealed class KallsymsFuzzSeedTests
{
    /// <summary>The image address the fuzz target passes to <see cref="Kallsyms.Scan"/>.</summary>
    private const ulong FuzzImageAddress = 0xffffffff81000000UL;

    private const int TablesAt = 0x100;

    private static (byte[] Seed, KallsymsWriter Writer) Build()
    {
        List<(string, char, ulong)> symbols = KallsymsWriter.SampleSymbols(FuzzImageAddress, 300, seed: 11, percpu: false, longNameLength: 140);
        var w = new KallsymsWriter(symbols, KallsymsAddressEncoding.BaseRelative, KallsymsOrder.Pre64, FuzzImageAddress);
        byte[] tables = w.Build(FuzzImageAddress + TablesAt);
        byte[] seed = new byte[TablesAt + tables.Length + 64];
        new Random(5).NextBytes(seed.AsSpan(0, TablesAt));
        tables.CopyTo(seed, TablesAt);
        return (seed, w);
    }

    private static string SeedPath()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "VmState.slnx")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        Assert.NotNull(dir);
        return Path.Combine(dir, "fuzz", "corpus", "kallsyms", "tables-base-relative.bin");
    }

    [Fact]
    public void TheCommittedSeedIsATableTheScanDecodes()
    {
        (byte[] seed, KallsymsWriter w) = Build();
        string path = SeedPath();
        if (Environment.GetEnvironmentVariable("VMSTATE_WRITE_FUZZ_SEEDS") == "1")
        {
            File.WriteAllBytes(path, seed);
        }

        Assert.Equal(seed, File.ReadAllBytes(path));
        Kallsyms k = Kallsyms.Scan(seed, FuzzImageAddress, imageIsVirtual: true, null, null);
        Assert.Equal(w.Symbols.Count, k.Count);
        Assert.Equal(w.Symbols[^1].Name, k[^1].Name);
    }
}
