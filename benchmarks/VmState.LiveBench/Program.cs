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
        // Sections: paths (every path side by side), layers (per-layer latency), capture (capture vs background
        // snapshot to a file), bulk (bulk reads, hash and search of all RAM beside memcpy, xxhsum and grep).
        HashSet<string> sections = args.Length > 2 ? [.. args[2].Split(',')] : ["paths", "layers", "capture", "bulk"];
        // One QMP client per socket: the front door attaches, and its LiveMachine serves the raw paths.
        await using Vm vm = await Vm.AttachAsync(socket);
        LiveMachine live = vm.Live!;
        Console.WriteLine($"guest: {live.Memory.Ranges.Sum(r => (long)r.Length) >> 20} MiB of RAM, memory path: {live.MemoryPath}");
        Console.WriteLine($"load average at start: {File.ReadAllText("/proc/loadavg").Trim()}; cores: {Environment.ProcessorCount}");
        MemoryRange main = live.Memory.Ranges.OrderByDescending(r => r.Length).First();
        var rng = new Random(42);
        ulong[] addresses = Enumerable.Range(0, 200_000).Select(_ => main.Start + ((ulong)rng.NextInt64(0, (long)main.Length - 8) & ~7UL)).ToArray();
        if (sections.Contains("layers"))
        {
            Layers(vm, addresses);
        }

        if (sections.Contains("capture"))
        {
            await Captures(live);
        }

        if (sections.Contains("paths"))
        {
            await Paths(live, main, addresses, gdbPort);
        }

        if (sections.Contains("bulk"))
        {
            await BulkScanHashSearch(live);
        }

        Console.WriteLine();
        Console.WriteLine($"load average at end: {File.ReadAllText("/proc/loadavg").Trim()}");
        return 0;
    }

    /// <summary>
    /// Random 8-byte reads through each layer a caller can use, the same addresses for each (best of three passes of
    /// 200,000 reads after a warm-up pass), so a regression shows which layer it came from: the raw path (the
    /// shared mapping's span, or QemuProcessMemory), LiveMemory (the per-range router), the IPhysicalMemory
    /// capability interface the front door gives, and the front door itself (vm.Machine.Memory on every read).
    /// </summary>
    private static void Layers(Vm vm, ulong[] addresses)
    {
        LiveMachine live = vm.Live!;
        Console.WriteLine();
        Console.WriteLine("| layer (random 8-byte reads) | shared memory | process memory |");
        Console.WriteLine("|---|---|---|");
        var process = new QemuProcessMemoryProbe(live);
        bool shared = live.Memory.SharedBytes > 0;
        string Cell(double ns) => ns >= 1000 ? $"{ns / 1000:F2} µs" : $"{ns:F1} ns";
        string na = "– (guest RAM not shared)";
        double rawShared = shared ? LatencySpan(live.Memory, addresses) : double.NaN;
        double rawProcess = LatencyConcrete(process.Memory, addresses, 50_000);
        Console.WriteLine($"| raw path (shared: TryGetSpan; process: QemuProcessMemory.Read) | {(shared ? Cell(rawShared) : na)} | {Cell(rawProcess)} |");
        double routed = LatencyRouter(live.Memory, addresses, shared ? addresses.Length : 50_000);
        Console.WriteLine($"| LiveMemory.Read (per-range router) | {(shared ? Cell(routed) : na)} | {(shared ? "–" : Cell(routed))} |");
        vm.TryGet(out IPhysicalMemory? capability);
        double viaInterface = LatencyInterface(capability!, addresses, shared ? addresses.Length : 50_000);
        double processInterface = LatencyInterface(process.Memory, addresses, 50_000);
        Console.WriteLine($"| IPhysicalMemory (capability interface; process column: QemuProcessMemory as IPhysicalMemory) | {(shared ? Cell(viaInterface) : na)} | {Cell(shared ? processInterface : viaInterface)} |");
        double frontDoor = LatencyFrontDoor(vm, addresses, shared ? addresses.Length : 50_000);
        Console.WriteLine($"| Vm front door (vm.Machine.Memory.Read per read) | {(shared ? Cell(frontDoor) : na)} | {(shared ? "– (the front door takes the shared path)" : Cell(frontDoor))} |");
    }

    private static double BestOf3(Func<double> run)
    {
        run();
        return Enumerable.Range(0, 3).Select(_ => run()).Min();
    }

    private static double LatencySpan(LiveMemory memory, ulong[] addresses) => BestOf3(() =>
    {
        Span<byte> b8 = stackalloc byte[8];
        ulong sink = 0;
        var sw = Stopwatch.StartNew();
        foreach (ulong a in addresses)
        {
            memory.TryGetSpan(a, 8, out ReadOnlySpan<byte> s);
            s.CopyTo(b8);
            sink += b8[0];
        }

        GC.KeepAlive(sink);
        return sw.Elapsed.TotalNanoseconds / addresses.Length;
    });

    private static double LatencyConcrete(QemuProcessMemory memory, ulong[] addresses, int n) => BestOf3(() =>
    {
        Span<byte> b8 = stackalloc byte[8];
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < n; i++)
        {
            memory.Read(addresses[i], b8);
        }

        return sw.Elapsed.TotalNanoseconds / n;
    });

    private static double LatencyRouter(LiveMemory memory, ulong[] addresses, int n) => BestOf3(() =>
    {
        Span<byte> b8 = stackalloc byte[8];
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < n; i++)
        {
            memory.Read(addresses[i], b8);
        }

        return sw.Elapsed.TotalNanoseconds / n;
    });

    private static double LatencyInterface(IPhysicalMemory memory, ulong[] addresses, int n) => BestOf3(() =>
    {
        Span<byte> b8 = stackalloc byte[8];
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < n; i++)
        {
            memory.Read(addresses[i], b8);
        }

        return sw.Elapsed.TotalNanoseconds / n;
    });

    private static double LatencyFrontDoor(Vm vm, ulong[] addresses, int n) => BestOf3(() =>
    {
        Span<byte> b8 = stackalloc byte[8];
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < n; i++)
        {
            vm.Machine.Memory.Read(addresses[i], b8);
        }

        return sw.Elapsed.TotalNanoseconds / n;
    });

    /// <summary>
    /// Captures streamed into this process beside background snapshots of the same VM to a file (QEMU's own
    /// migrate to a file descriptor, as <c>vmstate snapshot --qmp … --live</c> does), alternated so all see the same
    /// load: guest pause (QEMU's STOP→RESUME event timestamps, and QEMU's own downtime) and wall time per capture. Two
    /// consumers: one that reads and drops the stream (synchronous reads of 256 KiB on a thread of its own, as the
    /// history writer reads), and the history store writer itself (<c>vmstate record</c>'s capture: pages hashed,
    /// new ones compressed and stored, the capture committed; its index is not part of the capture's wall time).
    /// Set VMSTATE_CAPTURE_ROUNDS to change the rounds (default 9).
    /// </summary>
    private static async Task Captures(LiveMachine live)
    {
        int rounds = int.TryParse(Environment.GetEnvironmentVariable("VMSTATE_CAPTURE_ROUNDS"), out int r) ? r : 9;
        string dir = Directory.CreateTempSubdirectory("vmstate-livebench-capture-").FullName;
        string file = Path.Combine(dir, "snapshot.mig");
        var drop = new List<SaveResult>();
        var store = new List<SaveResult>();
        var toFile = new List<SaveResult>();
        byte[] buffer = new byte[256 << 10];
        var waits = new List<string>();
        var dropCpu = new List<double>();
        var dropSwitches = new List<long>();
        try
        {
            using VmState.History.HistoryStoreWriter writer = VmState.History.HistoryStoreWriter.Open(Path.Combine(dir, "store"));
            writer.IndexOnAppend = false;
            // One capture first, so the store holds the guest's pages as a recorder's store does after its first.
            await live.CaptureAsync((stream, ct) => Task.Run(() => writer.Append(stream, "warm-up", DateTimeOffset.UtcNow), ct));
            for (int i = 0; i < rounds; i++)
            {
                toFile.Add(await live.Qmp.SaveStateToFileAsync(file, background: true));
                File.Delete(file);
                (TimeSpan cpu0, long switches0) = CpuAndSwitches();
                drop.Add(await live.CaptureAsync((stream, ct) => Task.Run(
                    () =>
                    {
                        while (stream.Read(buffer) > 0)
                        {
                        }

                        // How often the consumer and the pump had to wait (the capture stream's counters, where it has them).
                        waits.Add(string.Join(", ", new[] { "ConsumerWaits", "PumpWaits", "PumpSleeps" }.Select(n => $"{n} {stream.GetType().GetProperty(n)?.GetValue(stream) ?? "-"}")));
                    }, ct)));
                (TimeSpan cpu1, long switches1) = CpuAndSwitches();
                dropCpu.Add((cpu1 - cpu0).TotalMilliseconds);
                dropSwitches.Add(switches1 - switches0);
                store.Add(await live.CaptureAsync((stream, ct) => Task.Run(() => writer.Append(stream, "bench", DateTimeOffset.UtcNow), ct)));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        static double Median(List<SaveResult> runs) => runs.Select(r => r.Elapsed.TotalMilliseconds).Order().ElementAt(runs.Count / 2);
        Console.WriteLine();
        Console.WriteLine($"| whole-state save ({rounds} rounds, alternated) | mode | bytes | guest pause (STOP→RESUME), median [min–max] | QEMU downtime, median | wall, median [min–max] | GB/s (median wall) | wall / file |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach ((string name, List<SaveResult> runs) in new[]
        {
            ("background snapshot to a file (QEMU migrate to fd, /tmp)", toFile),
            ("capture into this process, consumer reads and drops", drop),
            ("capture into a history store (vmstate record's capture)", store),
        })
        {
            double[] pause = [.. runs.Select(r => r.GuestPause?.TotalMilliseconds ?? double.NaN).Order()];
            double[] wall = [.. runs.Select(r => r.Elapsed.TotalMilliseconds).Order()];
            double downtime = runs.Select(r => r.DowntimeMilliseconds ?? double.NaN).Order().ElementAt(runs.Count / 2);
            Console.WriteLine($"| {name} | {runs[0].Mode} | {runs[0].Bytes:N0} | {pause[rounds / 2]:F1} ms [{pause[0]:F1}–{pause[^1]:F1}] | {downtime:F0} ms | {wall[rounds / 2]:F0} ms [{wall[0]:F0}–{wall[^1]:F0}] | {runs[0].Bytes / (wall[rounds / 2] / 1000) / 1e9:F2} | {wall[rounds / 2] / Median(toFile):F2}× |");
        }

        Console.WriteLine($"waits per capture (reads and drops): {string.Join("; ", waits)}");
        Console.WriteLine($"this process per capture (reads and drops), median: CPU {dropCpu.Order().ElementAt(dropCpu.Count / 2):F0} ms, context switches {dropSwitches.Order().ElementAt(dropSwitches.Count / 2)} (voluntary + involuntary, all threads: getrusage)");
        Console.WriteLine($"capture wall / file wall (medians): reads and drops {Median(drop) / Median(toFile):F2}×, into a history store {Median(store) / Median(toFile):F2}× (goal ≤ 1.2×)");
    }

    /// <summary>This process's CPU time and context switches so far, all threads including ended ones (getrusage(2) RUSAGE_SELF).</summary>
    private static (TimeSpan Cpu, long Switches) CpuAndSwitches()
    {
        // struct rusage on x86-64: ru_utime, ru_stime (timeval: 2 longs each), then 14 longs; ru_nvcsw and ru_nivcsw are the last two.
        long[] u = new long[18];
        if (getrusage(0, u) != 0)
        {
            return (TimeSpan.Zero, 0);
        }

        double seconds = u[0] + (u[1] / 1e6) + u[2] + (u[3] / 1e6);
        return (TimeSpan.FromSeconds(seconds), u[16] + u[17]);
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int getrusage(int who, [System.Runtime.InteropServices.Out] long[] usage);

    private static async Task Paths(LiveMachine live, MemoryRange main, ulong[] addresses, int gdbPort)
    {
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

        Console.WriteLine();
        Console.WriteLine("| path | 8-byte random read | bulk read | note |");
        Console.WriteLine("|---|---|---|---|");
        foreach ((string path, double ns, double gbs, string note) in rows)
        {
            string lat = ns >= 1000 ? $"{ns / 1000:F1} µs" : $"{ns:F0} ns";
            string bulk = gbs >= 0.1 ? $"{gbs:F2} GB/s" : $"{gbs * 1000:F2} MB/s";
            Console.WriteLine($"| {path} | {lat} | {bulk} | {note} |");
        }
    }

    /// <summary>
    /// Bulk reads per path beside memcpy of a buffer of the same size (main RAM, at most 2 GiB), then over all of the
    /// guest's RAM: the page hash (1 core, all cores) beside xxhsum on a dump of the same bytes, and the pattern search
    /// beside grep -c over that dump; each the best of three (the machine is shared; the best run is the one least
    /// disturbed).
    /// </summary>
    private static async Task BulkScanHashSearch(LiveMachine live)
    {
        MemoryRange main = live.Memory.Ranges.OrderByDescending(r => r.Length).First();
        IReadOnlyList<MemoryRange> all = live.Memory.Ranges;
        long allBytes = all.Sum(r => (long)r.Length);
        Console.WriteLine();
        Console.WriteLine($"all RAM: {allBytes >> 20} MiB in {all.Count} ranges; main RAM {main.Length >> 20} MiB");
        var process = new QemuProcessMemoryProbe(live);
        byte[] plain = GC.AllocateUninitializedArray<byte>((int)Math.Min(main.Length, (ulong)(int.MaxValue & ~4095)));
        live.Memory.Read(main.Start, plain); // a copy of guest RAM: the same bytes for the plain-buffer rows
        var plainMemory = new BufferMemory(plain, main.Start);
        long ramBytes = plain.Length;

        Console.WriteLine();
        Console.WriteLine($"| bulk read ({ramBytes >> 20} MiB of main RAM) | GB/s | memcpy GB/s (same sizes, same process) | ratio |");
        Console.WriteLine("|---|---|---|---|");
        foreach (int chunk in new[] { 4 << 20, 64 << 20 })
        {
            byte[] buffer = GC.AllocateUninitializedArray<byte>(chunk);
            double memcpy = Best(() => Sweep(ramBytes, chunk, (a, n) => plain.AsSpan((int)a, n).CopyTo(buffer)));
            double shared = Best(() => Sweep(ramBytes, chunk, (a, n) => live.Memory.Read(main.Start + (ulong)a, buffer.AsSpan(0, n))));
            double proc = Best(() => Sweep(ramBytes, chunk, (a, n) => process.Read(main.Start + (ulong)a, buffer.AsSpan(0, n))));
            string sharedName = live.Memory.SharedBytes > 0 ? "shared memory" : "front door (process memory; RAM not shared)";
            Console.WriteLine($"| {sharedName}, {chunk >> 20} MiB reads | {shared:F2} | {memcpy:F2} | {shared / memcpy:F2}× |");
            Console.WriteLine($"| process memory, {chunk >> 20} MiB reads | {proc:F2} | {memcpy:F2} | {proc / memcpy:F2}× |");
        }

        Console.WriteLine();
        Console.WriteLine($"| page hash (XxHash128 per 4 KiB page) | bytes | 1 core GB/s | all cores GB/s |");
        Console.WriteLine("|---|---|---|---|");
        var sources = new List<(string, IPhysicalMemory, IReadOnlyList<MemoryRange>, long)>();
        if (live.Memory.SharedBytes > 0)
        {
            sources.Add(("all RAM, shared memory (spans in place)", live.Memory, all, allBytes));
        }

        sources.Add(("all RAM, process memory (4 MiB reads)", process.Memory, all, allBytes));
        sources.Add(($"plain buffer in this process ({ramBytes >> 20} MiB of main RAM)", plainMemory, [main with { Length = (ulong)ramBytes }], ramBytes));
        foreach ((string name, IPhysicalMemory memory, IReadOnlyList<MemoryRange> ranges, long bytes) in sources)
        {
            double one = Best(() => Time(bytes, () => PhysicalMemoryHash.HashPages(new PhysicalMemoryScan(memory, ranges) { MaxDegreeOfParallelism = 1 })));
            double many = Best(() => Time(bytes, () => PhysicalMemoryHash.HashPages(new PhysicalMemoryScan(memory, ranges))));
            Console.WriteLine($"| {name} | {bytes >> 20} MiB | {one:F2} | {many:F2} |");
        }

        plain = [];
        string dumpDir = Directory.CreateTempSubdirectory("vmstate-livebench-dump-").FullName;
        try
        {
            // One pmemsave dump file per RAM range: the same bytes for xxhsum and grep.
            var files = new List<string>();
            var sw = Stopwatch.StartNew();
            foreach (MemoryRange r in all)
            {
                string f = Path.Combine(dumpDir, $"ram-{r.Start:x}");
                await live.Qmp.ExecuteAsync("pmemsave", new System.Text.Json.Nodes.JsonObject { ["val"] = r.Start, ["size"] = r.Length, ["filename"] = f }, TimeSpan.FromMinutes(10));
                files.Add(f);
            }

            double pmemsave = allBytes / sw.Elapsed.TotalSeconds / 1e9;
            string fileArgs = string.Join(' ', files);
            try
            {
                (double xxhsum, _) = BestProcess("xxhsum", $"-q -H2 {fileArgs}", allBytes);
                Console.WriteLine($"| xxhsum -q -H2 (XXH128 of the dump files, 1 core, page cache warm) | {allBytes >> 20} MiB | {xxhsum:F2} | – |");
            }
            catch (System.ComponentModel.Win32Exception)
            {
                Console.WriteLine("| xxhsum (not installed: apt-get install xxhash) | – | – | – |");
            }

            Console.WriteLine($"(QMP pmemsave of all RAM into the dump files: {pmemsave:F2} GB/s)");

            byte[] pattern = "Linux version "u8.ToArray();
            Console.WriteLine();
            Console.WriteLine($"| search \"{System.Text.Encoding.ASCII.GetString(pattern)}\" over all RAM ({allBytes >> 20} MiB) | seconds | GB/s | hits |");
            Console.WriteLine("|---|---|---|---|");
            var searched = new List<(string, IPhysicalMemory)>();
            if (live.Memory.SharedBytes > 0)
            {
                searched.Add(("shared memory", live.Memory));
            }

            searched.Add(("process memory", process.Memory));
            foreach ((string name, IPhysicalMemory memory) in searched)
            {
                foreach (int cores in new[] { 1, Environment.ProcessorCount })
                {
                    int hits = 0;
                    double gbs = Best(() => Time(allBytes, () => hits = PhysicalMemorySearch.Find(memory, pattern, int.MaxValue, all, cores).Count));
                    Console.WriteLine($"| vmstate {name}, {cores} core{(cores > 1 ? "s" : "")} | {allBytes / gbs / 1e9:F3} | {gbs:F2} | {hits} |");
                }
            }

            (double grep, string count) = BestProcess("grep", $"-c -a -F \"{System.Text.Encoding.ASCII.GetString(pattern)}\" {fileArgs}", allBytes);
            long lines = count.Split('\n', StringSplitOptions.RemoveEmptyEntries).Sum(l => long.Parse(l[(l.LastIndexOf(':') + 1)..], CultureInfo.InvariantCulture));
            Console.WriteLine($"| grep -c -a -F over the pmemsave dump files (page cache warm) | {allBytes / grep / 1e9:F3} | {grep:F2} | {lines} lines |");
        }
        finally
        {
            Directory.Delete(dumpDir, recursive: true);
        }
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
