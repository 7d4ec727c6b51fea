using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using VmState.Live;
using VmState.Memory;

namespace VmState.LiveBench;

/// <summary>
/// Live memory paths side by side on one running guest: 8-byte random reads (latency) and bulk reads
/// (throughput) through vmstate's shared-memory and process-memory paths, QMP/HMP xp, pmemsave and QEMU's gdbstub.
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

        return 0;
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

        public int Read(ulong address, Span<byte> destination) => _memory.Read(address, destination);

        private static ulong Hva(LiveMachine live, ulong gpa) =>
            HmpText.ParseGpa2Hva(live.Qmp.HumanMonitorCommandAsync($"gpa2hva 0x{gpa:x}").GetAwaiter().GetResult()) ?? 0;
    }
}
