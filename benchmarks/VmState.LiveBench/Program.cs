using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using VmState.Live;
using VmState.Memory;

namespace VmState.LiveBench;

/// <summary>
/// Live memory paths side by side on one running guest: 8-byte random reads (latency) and bulk reads
/// (throughput) through vmstate's shared-memory and process-memory paths, QMP/HMP xp, pmemsave and QEMU's gdbstub.
/// Then bulk reads beside memcpy, the page hash of all RAM (1 core and all cores) beside a plain buffer, and the
/// pattern search beside grep -c over a pmemsave dump of the same RAM.
/// Usage: VmState.LiveBench QMP_SOCKET GDB_PORT
/// </summary>
public static class Program
{
    private const int BulkBytes = 256 << 20;

    public static async Task<int> Main(string[] args)
    {
        string socket = args[0];
        int gdbPort = int.Parse(args[1], CultureInfo.InvariantCulture);
        await using LiveMachine live = await LiveMachine.AttachAsync(socket);
        MemoryRange main = live.Memory.Ranges.OrderByDescending(r => r.Length).First();
        var rng = new Random(42);
        ulong[] addresses = Enumerable.Range(0, 200_000).Select(_ => main.Start + ((ulong)rng.NextInt64(0, (long)main.Length - 8) & ~7UL)).ToArray();
        var rows = new List<(string Path, double ReadNs, double BulkGBs, string Note)>();

        // Shared memory: the public API read (copy of 8 bytes) and the zero-copy span.
        if (live.Memory.SharedBytes > 0)
        {
            byte[] b8 = new byte[8];
            ulong sink = 0;

            // The first pass faults each page into our mapping (cold); the second is the steady state.
            var sw = Stopwatch.StartNew();
            foreach (ulong a in addresses)
            {
                live.Memory.Read(a, b8);
                sink += b8[0];
            }

            double cold = sw.Elapsed.TotalNanoseconds / addresses.Length;
            sw.Restart();
            foreach (ulong a in addresses)
            {
                live.Memory.Read(a, b8);
                sink += b8[0];
            }

            double ns = sw.Elapsed.TotalNanoseconds / addresses.Length;
            double gbs = Bulk((a, buf) => live.Memory.Read(a, buf), main);
            sw.Restart();
            foreach (ulong a in addresses)
            {
                live.Memory.TryGetSpan(a, 8, out ReadOnlySpan<byte> s);
                sink += s[0];
            }

            double spanNs = sw.Elapsed.TotalNanoseconds / addresses.Length;
            rows.Add(("shared memory (vmstate)", ns, gbs, $"Read() of 8 bytes, pages already mapped; first touch of each page (cold): {cold:F0} ns; zero-copy span: {spanNs:F1} ns (checksum {sink & 0xff})"));
        }

        // Process memory (process_vm_readv).
        {
            var process = new QemuProcessMemoryProbe(live);
            byte[] b8 = new byte[8];
            int n = 50_000;
            for (int i = 0; i < n; i++)
            {
                process.Read(addresses[i], b8);
            }

            var sw = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
            {
                process.Read(addresses[i], b8);
            }

            rows.Add(("process memory (vmstate)", sw.Elapsed.TotalNanoseconds / n, Bulk(process.Read, main), "gpa2hva + process_vm_readv, second pass"));
        }

        // HMP xp through QMP: the way a tool without vmstate would read.
        {
            int n = 300;
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
            {
                await live.Qmp.HumanMonitorCommandAsync($"xp /1xg 0x{addresses[i]:x}");
            }

            double ns = sw.Elapsed.TotalNanoseconds / n;
            // xp prints at most a few KB per call; bulk = 512 B per call (64 quadwords).
            sw.Restart();
            for (int i = 0; i < 100; i++)
            {
                await live.Qmp.HumanMonitorCommandAsync($"xp /64xg 0x{addresses[i]:x}");
            }

            rows.Add(("QMP/HMP xp", ns, 100 * 512 / sw.Elapsed.TotalSeconds / 1e9, "text over the monitor"));
        }

        // pmemsave: QEMU writes guest RAM to a file we then read.
        {
            string file = Path.Combine(Path.GetTempPath(), $"vmstate-pmemsave-{Environment.ProcessId}");
            int n = 100;
            var sw = Stopwatch.StartNew();
            byte[] b8 = new byte[8];
            for (int i = 0; i < n; i++)
            {
                await live.Qmp.ExecuteAsync("pmemsave", new System.Text.Json.Nodes.JsonObject { ["val"] = addresses[i], ["size"] = 8, ["filename"] = file });
                using FileStream f = File.OpenRead(file);
                f.ReadExactly(b8);
            }

            double ns = sw.Elapsed.TotalNanoseconds / n;
            sw.Restart();
            await live.Qmp.ExecuteAsync("pmemsave", new System.Text.Json.Nodes.JsonObject { ["val"] = main.Start, ["size"] = BulkBytes, ["filename"] = file });
            byte[] big = File.ReadAllBytes(file);
            double gbs = big.Length / sw.Elapsed.TotalSeconds / 1e9;
            File.Delete(file);
            rows.Add(("QMP pmemsave", ns, gbs, "QEMU writes a file, we read it"));
        }

        // QEMU's gdbstub in physical-memory mode.
        try
        {
            // The library's gdbstub path (GdbstubMemory: physical mode, m packets of up to 2 KiB).
            using var gdb = new GdbstubMemory(live.Qmp, "127.0.0.1", gdbPort, live.Memory.Ranges);
            byte[] b8 = new byte[8];
            int n = 2000;
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
            {
                gdb.Read(addresses[i], b8);
            }

            double ns = sw.Elapsed.TotalNanoseconds / n;
            sw.Restart();
            byte[] chunk = new byte[16 << 20];
            long bytes = gdb.Read(main.Start + (1UL << 20), chunk);
            rows.Add(("QEMU gdbstub", ns, bytes / sw.Elapsed.TotalSeconds / 1e9, "RSP m packets, physical mode"));
        }
        catch (SocketException e)
        {
            rows.Add(("QEMU gdbstub", double.NaN, double.NaN, $"not reachable: {e.Message}"));
        }

        Console.WriteLine("| path | 8-byte random read | bulk read | note |");
        Console.WriteLine("|---|---|---|---|");
        foreach ((string path, double ns, double gbs, string note) in rows)
        {
            string lat = ns >= 1000 ? $"{ns / 1000:F1} µs" : $"{ns:F0} ns";
            string bulk = gbs >= 0.1 ? $"{gbs:F2} GB/s" : $"{gbs * 1000:F2} MB/s";
            Console.WriteLine($"| {path} | {lat} | {bulk} | {note} |");
        }

        await BulkScanHashSearch(live, main);
        return 0;
    }

    /// <summary>
    /// Bulk reads per path beside memcpy of a buffer of the same size, the page hash of all RAM and the pattern
    /// search: each the best of three (the machine is shared; the best run is the one least disturbed).
    /// </summary>
    private static async Task BulkScanHashSearch(LiveMachine live, MemoryRange main)
    {
        Console.WriteLine();
        Console.WriteLine($"load average at start: {File.ReadAllText("/proc/loadavg").Trim()}; cores: {Environment.ProcessorCount}; main RAM {main.Length >> 20} MiB");
        var process = new QemuProcessMemoryProbe(live);
        byte[] plain = GC.AllocateUninitializedArray<byte>((int)Math.Min(main.Length, int.MaxValue - 4096L));
        live.Memory.Read(main.Start, plain); // a copy of guest RAM: the same bytes for the plain-buffer rows
        var plainMemory = new BufferMemory(plain, main.Start);
        long ramBytes = plain.Length;

        Console.WriteLine();
        Console.WriteLine("| bulk read (all main RAM) | GB/s | memcpy GB/s (same sizes, same process) | ratio |");
        Console.WriteLine("|---|---|---|---|");
        foreach (int chunk in new[] { 4 << 20, 64 << 20 })
        {
            byte[] buffer = GC.AllocateUninitializedArray<byte>(chunk);
            double memcpy = Best(() => Sweep(ramBytes, chunk, (a, n) => plain.AsSpan((int)a, n).CopyTo(buffer)));
            double shared = Best(() => Sweep(ramBytes, chunk, (a, n) => live.Memory.Read(main.Start + (ulong)a, buffer.AsSpan(0, n))));
            double proc = Best(() => Sweep(ramBytes, chunk, (a, n) => process.Read(main.Start + (ulong)a, buffer.AsSpan(0, n))));
            Console.WriteLine($"| shared memory, {chunk >> 20} MiB reads | {shared:F2} | {memcpy:F2} | {shared / memcpy:F2}× |");
            Console.WriteLine($"| process memory, {chunk >> 20} MiB reads | {proc:F2} | {memcpy:F2} | {proc / memcpy:F2}× |");
        }

        Console.WriteLine();
        Console.WriteLine("| page hash of all main RAM (XxHash128 per 4 KiB page) | 1 core GB/s | all cores GB/s |");
        Console.WriteLine("|---|---|---|");
        foreach ((string name, IPhysicalMemory memory) in new (string, IPhysicalMemory)[] { ("shared memory (spans in place)", live.Memory), ("process memory (4 MiB reads)", process.Memory), ("plain buffer in this process", plainMemory) })
        {
            double one = Best(() => Time(ramBytes, () => PhysicalMemoryHash.HashPages(new PhysicalMemoryScan(memory, [main with { Length = (ulong)ramBytes }]) { MaxDegreeOfParallelism = 1 })));
            double all = Best(() => Time(ramBytes, () => PhysicalMemoryHash.HashPages(new PhysicalMemoryScan(memory, [main with { Length = (ulong)ramBytes }]))));
            Console.WriteLine($"| {name} | {one:F2} | {all:F2} |");
        }

        string dump = Path.Combine(Path.GetTempPath(), $"vmstate-livebench-dump-{Environment.ProcessId}");
        try
        {
            var sw = Stopwatch.StartNew();
            await live.Qmp.ExecuteAsync("pmemsave", new System.Text.Json.Nodes.JsonObject { ["val"] = main.Start, ["size"] = ramBytes, ["filename"] = dump }, TimeSpan.FromMinutes(5));
            double pmemsave = ramBytes / sw.Elapsed.TotalSeconds / 1e9;
            try
            {
                (double xxhsum, _) = BestProcess("xxhsum", $"-q -H2 {dump}", ramBytes);
                Console.WriteLine($"| xxhsum -q -H2 (XXH128 of the whole dump file, 1 core, page cache warm) | {xxhsum:F2} | – |");
            }
            catch (System.ComponentModel.Win32Exception)
            {
                Console.WriteLine("| xxhsum (not installed: apt-get install xxhash) | – | – |");
            }

            Console.WriteLine($"(QMP pmemsave of the same RAM into the dump file: {pmemsave:F2} GB/s)");

            byte[] pattern = "Linux version "u8.ToArray();
            Console.WriteLine();
            Console.WriteLine($"| search \"{System.Text.Encoding.ASCII.GetString(pattern)}\" over all main RAM | seconds | GB/s | hits |");
            Console.WriteLine("|---|---|---|---|");
            foreach ((string name, IPhysicalMemory memory) in new (string, IPhysicalMemory)[] { ("shared memory", live.Memory), ("process memory", process.Memory) })
            {
                foreach (int cores in new[] { 1, Environment.ProcessorCount })
                {
                    int hits = 0;
                    double gbs = Best(() => Time(ramBytes, () => hits = PhysicalMemorySearch.Find(memory, pattern, int.MaxValue, [main with { Length = (ulong)ramBytes }], cores).Count));
                    Console.WriteLine($"| vmstate {name}, {cores} core{(cores > 1 ? "s" : "")} | {ramBytes / gbs / 1e9:F3} | {gbs:F2} | {hits} |");
                }
            }

            (double grep, string count) = BestProcess("grep", $"-c -a -F \"{System.Text.Encoding.ASCII.GetString(pattern)}\" {dump}", ramBytes);
            Console.WriteLine($"| grep -c -a -F over the pmemsave dump (page cache warm) | {ramBytes / grep / 1e9:F3} | {grep:F2} | {count.Trim()} lines |");
        }
        finally
        {
            File.Delete(dump);
        }

        Console.WriteLine();
        Console.WriteLine($"load average at end: {File.ReadAllText("/proc/loadavg").Trim()}");
    }

    private static double Best(Func<double> run) => Enumerable.Range(0, 3).Select(_ => run()).Max();

    private static double Time(long bytes, Action run)
    {
        var sw = Stopwatch.StartNew();
        run();
        return bytes / sw.Elapsed.TotalSeconds / 1e9;
    }

    private static double Sweep(long total, int chunk, Action<long, int> read) => Time(total, () =>
    {
        for (long a = 0; a < total; a += chunk)
        {
            read(a, (int)Math.Min(chunk, total - a));
        }
    });

    private static (double GBs, string Output) BestProcess(string file, string arguments, long bytes)
    {
        double best = 0;
        string output = string.Empty;
        for (int i = 0; i < 4; i++)
        {
            // The first run warms the page cache and is not counted.
            var sw = Stopwatch.StartNew();
            using var p = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })!;
            Task<string> errors = p.StandardError.ReadToEndAsync();
            output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            errors.Wait();
            double gbs = bytes / sw.Elapsed.TotalSeconds / 1e9;
            best = i == 0 ? 0 : Math.Max(best, gbs);
        }

        return (best, output);
    }

    /// <summary>A plain byte array as guest memory at <c>start</c>, lending spans like shared memory does.</summary>
    private sealed class BufferMemory(byte[] bytes, ulong start) : IPhysicalMemory, ISpanMemory
    {
        public string Name => "buffer";

        public IReadOnlyList<MemoryRange> Ranges { get; } = [new MemoryRange(start, (ulong)bytes.Length, "buffer")];

        public int Read(ulong address, Span<byte> destination)
        {
            if (address < start || address - start >= (ulong)bytes.Length)
            {
                return 0;
            }

            int n = (int)Math.Min((ulong)destination.Length, (ulong)bytes.Length - (address - start));
            bytes.AsSpan((int)(address - start), n).CopyTo(destination);
            return n;
        }

        public bool TryGetSpan(ulong address, int length, out ReadOnlySpan<byte> span)
        {
            bool inside = address >= start && address - start + (ulong)length <= (ulong)bytes.Length;
            span = inside ? bytes.AsSpan((int)(address - start), length) : default;
            return inside;
        }
    }

    private static double Bulk(Func<ulong, Span<byte>, int> read, MemoryRange range)
    {
        byte[] buffer = new byte[4 << 20];
        ulong start = range.Start + (1UL << 20);
        var sw = Stopwatch.StartNew();
        long total = 0;
        while (total < BulkBytes)
        {
            ulong a = start + (ulong)(total % (long)(range.Length - (4UL << 20) - (1UL << 20)));
            total += read(a, buffer);
        }

        return total / sw.Elapsed.TotalSeconds / 1e9;
    }

    /// <summary>The process path alone (the live machine prefers shared memory where it exists).</summary>
    private sealed class QemuProcessMemoryProbe(LiveMachine live)
    {
        private readonly QemuProcessMemory _memory = new(live.Memory.ProcessId, live.Memory.Ranges.Select(r => (r, Hva(live, r.Start))).ToList());

        public QemuProcessMemory Memory => _memory;

        public int Read(ulong address, Span<byte> destination) => _memory.Read(address, destination);

        private static ulong Hva(LiveMachine live, ulong gpa) =>
            HmpText.ParseGpa2Hva(live.Qmp.HumanMonitorCommandAsync($"gpa2hva 0x{gpa:x}").GetAwaiter().GetResult()) ?? 0;
    }
}
