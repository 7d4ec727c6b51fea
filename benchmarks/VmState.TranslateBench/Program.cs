using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using VmState.Arch.X86;
using VmState.Linux;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.TranslateBench;

/// <summary>
/// Virtual-to-physical translation throughput of <see cref="AddressSpace"/> on a real guest's page tables: the
/// kernel's address space and one user process's, addresses sampled from every mapped page that the snapshot backs.
/// Measures cached translations (a working set inside the translation cache, and one larger than it), cold ones
/// (<see cref="AddressSpace.Invalidate"/>, then every address on a different page, so each one walks the page
/// tables), fully cold ones (<see cref="AddressSpace.Invalidate"/> before every translation: every level read from
/// guest memory), <see cref="AddressSpace.Translate"/> (every level reported) and translation plus an 8-byte read.
/// Every result is checked against a full walk on a separate instance. Writes the results to OUTDIR/vmstate.json and,
/// for the peers, a prefix of every address set with the expected physical address and 8-byte value to OUTDIR/SET.bin.
/// Usage: VmState.TranslateBench SNAPSHOT OUTDIR [ADDRESSES [PEER_ADDRESSES [SEED]]]
/// </summary>
public static class Program
{
    /// <summary>AddressSpace.cs: MaxCachedTranslations = 1 &lt;&lt; 16 pages (the whole cache is dropped when full).</summary>
    private const int TranslationCachePages = 1 << 16;

    /// <summary>AddressSpace.cs: MaxCachedTables = 4096 page-table pages.</summary>
    private const int TableCachePages = 4096;

    /// <summary>A working set well inside both caches.</summary>
    private const int CachedWorkingSetPages = 16_384;

    private const int TimedPasses = 5;

    private const int MaxPages = 8 << 20;

    public static int Main(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: VmState.TranslateBench SNAPSHOT OUTDIR [ADDRESSES [PEER_ADDRESSES [SEED]]]");
            return 2;
        }

        string snapshot = args[0];
        string outDir = args[1];
        int count = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 4_000_000;
        int peerCount = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 300_000;
        int seed = args.Length > 4 ? int.Parse(args[4], CultureInfo.InvariantCulture) : 1;
        Directory.CreateDirectory(outDir);
        var rng = new Random(seed);

        using MachineState machine = SnapshotLoader.Open(snapshot, new SnapshotOpenOptions { CacheReads = true });
        LinuxKernel kernel = KernelLocator.Locate(machine);
        Console.WriteLine($"kernel {kernel.Release}, {kernel.Paging} paging, page tables at 0x{kernel.PageTableRoot:x}, located by {kernel.Method}");

        var spaces = new List<Space>();
        AddressSpace k = kernel.AddressSpace;
        // The peers take the top-level table by virtual address: swapper_pg_dir (init_top_pgt) as init_mm.pgd holds it.
        ulong kernelPgdVa = kernel.Symbols.TryGetAddress("init_top_pgt", out ulong top) && k.TryTranslate(top, out ulong topPa) && topPa == k.Root
            ? top
            : kernel.PageOffsetBase + k.Root;
        spaces.Add(Space.Build("kernel", "kernel (init_mm, every mapping)", new AddressSpace(k.Memory, k.Mode, k.Cr3), kernelPgdVa, _ => true));

        // The user process with the most mapped, backed user pages.
        Space? user = null;
        foreach (LinuxProcess p in ProcessList.Read(kernel, threads: false, cmdline: false))
        {
            if (p.IsKernelThread)
            {
                continue;
            }

            KernelObject mm = kernel.ObjectAt(p.TaskAddress, "struct task_struct").Member("mm");
            if (mm.IsNull)
            {
                continue;
            }

            ulong pgd = mm.Member("pgd").ToUInt64();
            Space s = Space.Build("user", $"user: pid {p.Pid} {p.Comm} (its own page tables, user mappings)", kernel.ProcessAddressSpace(pgd), pgd, m => m.User);
            if (user is null || s.Pages.Length > user.Pages.Length)
            {
                user = s;
            }
        }

        if (user is not null)
        {
            spaces.Add(user);
        }

        foreach (Space s in spaces)
        {
            Console.WriteLine($"{s.Description}: {s.Pages.Length} backed 4 KiB pages in {s.Mappings} mappings ({s.PageSizes}); {s.Unbacked} mapped pages not in the snapshot skipped");
        }

        var sets = new List<AddressSet>();
        foreach (Space s in spaces)
        {
            int[] all = Enumerable.Range(0, s.Pages.Length).ToArray();
            rng.Shuffle(all);
            int ws = Math.Min(CachedWorkingSetPages, all.Length);
            sets.Add(AddressSet.Random(s, $"{s.Name}-cached", "cached", $"{ws} pages (cache: {TranslationCachePages} translations, {TableCachePages} tables), random order, after a warm-up pass", all[..ws], count, rng));
            if (all.Length > TranslationCachePages)
            {
                sets.Add(AddressSet.Random(s, $"{s.Name}-large", "cached, larger than the cache", $"all {all.Length} pages (> {TranslationCachePages}-page translation cache), random order, after a warm-up pass", all, count, rng));
            }

            sets.Add(AddressSet.Cold(s, $"{s.Name}-cold", "cold", $"Invalidate(), then each of the {all.Length} pages once in random order", all, rng));
        }

        var results = new List<SetResult>();
        bool allGood = true;
        foreach (AddressSet set in sets)
        {
            SetResult r = Measure(set, count, peerCount);
            results.Add(r);
            allGood &= r.Mismatches == 0;
            Console.WriteLine(r.Summary());
            WritePeerFile(Path.Combine(outDir, set.Name + ".bin"), set, peerCount);
        }

        WriteJson(Path.Combine(outDir, "vmstate.json"), snapshot, kernel, spaces, results, count, peerCount, seed);
        Console.WriteLine(allGood ? "verified: every translation equals a full walk on a separate instance" : "MISMATCHES: see above");
        return allGood ? 0 : 1;
    }

    private static SetResult Measure(AddressSet set, int count, int peerCount)
    {
        AddressSpace s = set.Space.Bench;
        ulong[] va = set.Va;
        ulong[] expectedPa = new ulong[va.Length];
        ulong[] expectedValue = new ulong[va.Length];
        for (int i = 0; i < va.Length; i++)
        {
            expectedPa[i] = set.Space.PagePa[set.Page[i]] + (va[i] & 0xFFF);
            expectedValue[i] = ReadPhysical(s.Memory, expectedPa[i]);
        }

        set.ExpectedPa = expectedPa;
        set.ExpectedValue = expectedValue;
        ulong[] got = new ulong[va.Length];
        var r = new SetResult(set);
        bool cold = set.Kind == "cold";

        // TryTranslate.
        if (!cold)
        {
            s.Invalidate();
            TranslatePass(s, va, got);
            r.Check("TryTranslate, first pass after Invalidate()", got, expectedPa);
            TranslatePass(s, va, got);
            for (int p = 0; p < TimedPasses; p++)
            {
                r.Translate.Add(va.Length / TranslatePass(s, va, got));
                r.Check("TryTranslate, cached", got, expectedPa);
            }
        }
        else
        {
            int passes = Math.Clamp((count + va.Length - 1) / va.Length, TimedPasses, 5000);
            s.Invalidate();
            TranslatePass(s, va, got);
            for (int p = 0; p < passes; p++)
            {
                s.Invalidate();
                r.Translate.Add(va.Length / TranslatePass(s, va, got));
                r.Check("TryTranslate, cold", got, expectedPa);
            }

            // A second pass without Invalidate(): cached where the cache kept the page; must agree with the cold pass.
            TranslatePass(s, va, got);
            r.Check("TryTranslate, second pass (cached where kept)", got, expectedPa);
        }

        // Translation plus an 8-byte read (AddressSpace.Read), as drgn's read through page tables does.
        int readPasses = cold ? TimedPasses : 3;
        s.Invalidate();
        ReadPass(s, va, got);
        r.Check("Read 8 bytes, first pass", got, expectedValue);
        for (int p = 0; p < readPasses; p++)
        {
            if (cold)
            {
                s.Invalidate();
            }

            r.Read.Add(va.Length / ReadPass(s, va, got));
            r.Check("Read 8 bytes", got, expectedValue);
        }

        if (cold)
        {
            // Fully cold: every level of every walk read from guest memory.
            ulong[] prefix = va[..Math.Min(peerCount, va.Length)];
            ulong[] prefixGot = new ulong[prefix.Length];
            ulong[] prefixExpected = expectedPa[..prefix.Length];
            FullyColdPass(s, prefix, prefixGot);
            for (int p = 0; p < 3; p++)
            {
                r.FullyCold.Add(prefix.Length / FullyColdPass(s, prefix, prefixGot));
                r.Check("TryTranslate, Invalidate() before each", prefixGot, prefixExpected);
            }

            // Translate(): every level recorded, no translation cache, page-table pages cached.
            s.Invalidate();
            AllLevelsPass(s, prefix, prefixGot);
            for (int p = 0; p < 3; p++)
            {
                r.AllLevels.Add(prefix.Length / AllLevelsPass(s, prefix, prefixGot));
                r.Check("Translate()", prefixGot, prefixExpected);
            }
        }

        return r;
    }

    private static double TranslatePass(AddressSpace s, ulong[] va, ulong[] pa)
    {
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < va.Length; i++)
        {
            if (!s.TryTranslate(va[i], out pa[i]))
            {
                pa[i] = ulong.MaxValue;
            }
        }

        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static double ReadPass(AddressSpace s, ulong[] va, ulong[] value)
    {
        Span<byte> b = stackalloc byte[8];
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < va.Length; i++)
        {
            value[i] = s.Read(va[i], b) == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(b) : ulong.MaxValue;
        }

        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static double FullyColdPass(AddressSpace s, ulong[] va, ulong[] pa)
    {
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < va.Length; i++)
        {
            s.Invalidate();
            if (!s.TryTranslate(va[i], out pa[i]))
            {
                pa[i] = ulong.MaxValue;
            }
        }

        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static double AllLevelsPass(AddressSpace s, ulong[] va, ulong[] pa)
    {
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < va.Length; i++)
        {
            pa[i] = s.Translate(va[i]).PhysicalAddress ?? ulong.MaxValue;
        }

        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static ulong ReadPhysical(IPhysicalMemory memory, ulong pa)
    {
        Span<byte> b = stackalloc byte[8];
        if (memory.Read(pa, b) != 8)
        {
            throw new InvalidOperationException($"physical 0x{pa:x} is not in the snapshot");
        }

        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    /// <summary>Triples (virtual address, expected physical address, expected u64 there), little-endian.</summary>
    private static void WritePeerFile(string path, AddressSet set, int peerCount)
    {
        int n = Math.Min(peerCount, set.Va.Length);
        byte[] buf = new byte[n * 24];
        for (int i = 0; i < n; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(buf.AsSpan(i * 24), set.Va[i]);
            BinaryPrimitives.WriteUInt64LittleEndian(buf.AsSpan((i * 24) + 8), set.ExpectedPa[i]);
            BinaryPrimitives.WriteUInt64LittleEndian(buf.AsSpan((i * 24) + 16), set.ExpectedValue[i]);
        }

        File.WriteAllBytes(path, buf);
    }

    private static void WriteJson(string path, string snapshot, LinuxKernel kernel, List<Space> spaces, List<SetResult> results, int count, int peerCount, int seed)
    {
        using FileStream f = File.Create(path);
        using var w = new Utf8JsonWriter(f, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("snapshot", Path.GetFullPath(snapshot));
        w.WriteString("release", kernel.Release);
        w.WriteString("paging", kernel.Paging.ToString());
        w.WriteString("pageOffsetBase", $"0x{kernel.PageOffsetBase:x}");
        w.WriteNumber("addresses", count);
        w.WriteNumber("peerAddresses", peerCount);
        w.WriteNumber("seed", seed);
        w.WriteNumber("translationCachePages", TranslationCachePages);
        w.WriteNumber("tableCachePages", TableCachePages);
        w.WriteNumber("processorCount", Environment.ProcessorCount);
        w.WriteString("runtime", System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription);
        w.WriteStartObject("spaces");
        foreach (Space s in spaces)
        {
            w.WriteStartObject(s.Name);
            w.WriteString("description", s.Description);
            w.WriteString("pgdVa", $"0x{s.PgdVa:x}");
            w.WriteString("pgdPa", $"0x{s.Bench.Root:x}");
            w.WriteBoolean("la57", s.Bench.Mode == PagingMode.Level5);
            w.WriteNumber("pages", s.Pages.Length);
            w.WriteNumber("mappings", s.Mappings);
            w.WriteString("pageSizes", s.PageSizes);
            w.WriteNumber("unbackedPagesSkipped", s.Unbacked);
            w.WriteEndObject();
        }

        w.WriteEndObject();
        w.WriteStartArray("sets");
        foreach (SetResult r in results)
        {
            w.WriteStartObject();
            w.WriteString("name", r.Set.Name);
            w.WriteString("space", r.Set.Space.Name);
            w.WriteString("kind", r.Set.Kind);
            w.WriteString("description", r.Set.Description);
            w.WriteNumber("addresses", r.Set.Va.Length);
            w.WriteNumber("distinctPages", r.Set.DistinctPages);
            w.WriteNumber("peerAddresses", Math.Min(peerCount, r.Set.Va.Length));
            WriteRates(w, "translatePerSecond", r.Translate);
            WriteRates(w, "read8PerSecond", r.Read);
            WriteRates(w, "fullyColdPerSecond", r.FullyCold);
            WriteRates(w, "translateAllLevelsPerSecond", r.AllLevels);
            w.WriteNumber("checkedTranslations", r.Checked);
            w.WriteNumber("mismatches", r.Mismatches);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteRates(Utf8JsonWriter w, string name, List<double> rates)
    {
        if (rates.Count == 0)
        {
            return;
        }

        w.WriteStartObject(name);
        w.WriteNumber("median", Median(rates));
        w.WriteStartArray("passes");
        foreach (double x in rates)
        {
            w.WriteNumberValue(Math.Round(x));
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static double Median(List<double> xs)
    {
        double[] s = [.. xs.Order()];
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[(s.Length / 2) - 1] + s[s.Length / 2]) / 2;
    }

    private static string Rate(List<double> xs) => xs.Count == 0 ? "-" : $"{Median(xs) / 1e6:F2} M/s";

    /// <summary>One address space and its backed 4 KiB pages, with each page's physical address from a full walk.</summary>
    private sealed class Space
    {
        private Space(string name, string description, AddressSpace bench, ulong pgdVa, ulong[] pages, ulong[] pagePa, int mappings, string pageSizes, int unbacked)
        {
            Name = name;
            Description = description;
            Bench = bench;
            PgdVa = pgdVa;
            Pages = pages;
            PagePa = pagePa;
            Mappings = mappings;
            PageSizes = pageSizes;
            Unbacked = unbacked;
        }

        public string Name { get; }

        public string Description { get; }

        /// <summary>The instance measured (its caches are only ever filled by the measurements).</summary>
        public AddressSpace Bench { get; }

        public ulong PgdVa { get; }

        public ulong[] Pages { get; }

        public ulong[] PagePa { get; }

        public int Mappings { get; }

        public string PageSizes { get; }

        public int Unbacked { get; }

        /// <summary>
        /// Enumerates the mappings on a separate instance, walks every 4 KiB page of them (<see cref="AddressSpace.Translate"/>),
        /// checks the walk against the enumeration and keeps the pages whose frame the snapshot holds.
        /// </summary>
        public static Space Build(string name, string description, AddressSpace bench, ulong pgdVa, Func<VirtualMapping, bool> filter)
        {
            var truth = new AddressSpace(bench.Memory, bench.Mode, bench.Cr3);
            var pages = new List<ulong>();
            var pas = new List<ulong>();
            var sizes = new SortedDictionary<ulong, int>();
            int unbacked = 0;
            int mappings = 0;
            byte[] page = new byte[0x1000];
            foreach (VirtualMapping m in truth.Mappings())
            {
                if (!filter(m))
                {
                    continue;
                }

                mappings++;
                for (ulong off = 0; off < m.Size; off += 0x1000)
                {
                    ulong va = m.VirtualAddress + off;
                    Translation t = truth.Translate(va);
                    if (t.PhysicalAddress is not ulong pa || pa != m.PhysicalAddress + off)
                    {
                        throw new InvalidOperationException($"{name}: 0x{va:x} is enumerated at 0x{m.PhysicalAddress + off:x} but walks to {(t.PhysicalAddress is ulong x ? $"0x{x:x}" : t.Failure)}");
                    }

                    if (bench.Memory.Read(pa, page) != page.Length)
                    {
                        unbacked++;
                        continue;
                    }

                    sizes[t.PageSize] = sizes.GetValueOrDefault(t.PageSize) + 1;
                    pages.Add(va);
                    pas.Add(pa);
                    if (pages.Count > MaxPages)
                    {
                        throw new InvalidOperationException($"{name}: more than {MaxPages} mapped pages");
                    }
                }
            }

            string pageSizes = string.Join(", ", sizes.Select(kv => $"{kv.Value} in {(kv.Key >= 1UL << 30 ? $"{kv.Key >> 30} GiB" : kv.Key >= 1UL << 20 ? $"{kv.Key >> 20} MiB" : $"{kv.Key >> 10} KiB")} pages"));
            return new Space(name, description, bench, pgdVa, [.. pages], [.. pas], mappings, pageSizes, unbacked);
        }
    }

    /// <summary>Addresses (8-byte aligned, random offset in the page) and the index of each one's page.</summary>
    private sealed class AddressSet
    {
        private AddressSet(Space space, string name, string kind, string description, ulong[] va, int[] page, int distinctPages)
        {
            Space = space;
            Name = name;
            Kind = kind;
            Description = description;
            Va = va;
            Page = page;
            DistinctPages = distinctPages;
        }

        public Space Space { get; }

        public string Name { get; }

        public string Kind { get; }

        public string Description { get; }

        public ulong[] Va { get; }

        public int[] Page { get; }

        public int DistinctPages { get; }

        public ulong[] ExpectedPa { get; set; } = [];

        public ulong[] ExpectedValue { get; set; } = [];

        /// <summary><paramref name="count"/> addresses on pages drawn at random from <paramref name="pages"/>.</summary>
        public static AddressSet Random(Space space, string name, string kind, string description, int[] pages, int count, Random rng)
        {
            ulong[] va = new ulong[count];
            int[] page = new int[count];
            for (int i = 0; i < count; i++)
            {
                int p = pages[rng.Next(pages.Length)];
                page[i] = p;
                va[i] = space.Pages[p] + ((ulong)rng.Next(512) * 8);
            }

            return new AddressSet(space, name, kind, description, va, page, pages.Length);
        }

        /// <summary>One address on each page, in the (already shuffled) order of <paramref name="pages"/>.</summary>
        public static AddressSet Cold(Space space, string name, string kind, string description, int[] pages, Random rng)
        {
            ulong[] va = new ulong[pages.Length];
            for (int i = 0; i < pages.Length; i++)
            {
                va[i] = space.Pages[pages[i]] + ((ulong)rng.Next(512) * 8);
            }

            return new AddressSet(space, name, kind, description, va, [.. pages], pages.Length);
        }
    }

    private sealed class SetResult(AddressSet set)
    {
        public AddressSet Set { get; } = set;

        public List<double> Translate { get; } = [];

        public List<double> Read { get; } = [];

        public List<double> FullyCold { get; } = [];

        public List<double> AllLevels { get; } = [];

        public long Checked { get; private set; }

        public long Mismatches { get; private set; }

        public void Check(string what, ulong[] got, ulong[] expected)
        {
            int bad = 0;
            for (int i = 0; i < got.Length; i++)
            {
                if (got[i] != expected[i])
                {
                    if (bad++ < 3)
                    {
                        Console.WriteLine($"  MISMATCH {Set.Name} {what}: 0x{Set.Va[i]:x} gave 0x{got[i]:x}, expected 0x{expected[i]:x}");
                    }
                }
            }

            Checked += got.Length;
            Mismatches += bad;
        }

        public string Summary() =>
            $"{Set.Name,-14} {Set.Va.Length,9} addresses on {Set.DistinctPages,7} pages: TryTranslate {Rate(Translate)}, Read 8 B {Rate(Read)}"
            + (FullyCold.Count > 0 ? $", Invalidate() before each {Rate(FullyCold)}, Translate() {Rate(AllLevels)}" : string.Empty)
            + $"; {Checked} results checked, {Mismatches} mismatches";
    }
}
