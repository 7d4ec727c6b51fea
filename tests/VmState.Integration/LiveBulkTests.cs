using System.Text;
using System.Text.Json.Nodes;
using VmState.Integration.Harness;
using VmState.IO;
using VmState.Live;
using VmState.Memory;

namespace VmState.Integration;

/// <summary>
/// Bulk reads, page hashes and pattern search of a running guest's RAM through the shared-memory and the
/// process-memory paths, against QEMU's own dump (pmemsave) of the paused guest and the marker's reported address.
/// </summary>
public sealed class LiveBulkTests(SharedMemoryGuest shared) : IClassFixture<SharedMemoryGuest>, IDisposable
{
    private readonly string _dump = Path.Combine(Path.GetTempPath(), $"vmstate-bulk-{Guid.NewGuid():N}");

    private readonly QemuGuest _guest = shared.Guest;

    public void Dispose() => File.Delete(_dump);

    [Fact]
    public async Task BulkReadsAndPageHashesOfBothPathsEqualQemusOwnDumpOfThePausedGuest()
    {
        await using LiveMachine live = await LiveMachine.AttachAsync(_guest.ToolQmpPath);
        Assert.True(live.Memory.SharedBytes >= 500UL << 20, live.MemoryPath);
        QemuProcessMemory process = await ProcessPathAsync(live);
        await live.Qmp.ExecuteAsync("stop");
        try
        {
            MemoryRange main = live.Memory.Ranges.MaxBy(r => r.Length);
            await live.Qmp.ExecuteAsync("pmemsave", new JsonObject { ["val"] = main.Start, ["size"] = main.Length, ["filename"] = _dump }, TimeSpan.FromMinutes(2));
            using var file = new FileSource(_dump);
            var dumped = new FileRangeMemory(file, [(main, 0, main.Length)]);
            Assert.Equal((long)main.Length, new FileInfo(_dump).Length);

            // 64 MiB reads through the front door of each path, compared with the dump.
            const int Chunk = 64 << 20;
            byte[] expected = new byte[Chunk];
            byte[] shared = new byte[Chunk];
            byte[] viaProcess = new byte[Chunk];
            for (ulong a = main.Start; a < main.End; a += Chunk)
            {
                int n = (int)Math.Min(Chunk, main.End - a);
                Assert.Equal(n, dumped.Read(a, expected.AsSpan(0, n)));
                Assert.Equal(n, live.Memory.Read(a, shared.AsSpan(0, n)));
                Assert.Equal(n, process.Read(a, viaProcess.AsSpan(0, n)));
                Assert.True(expected.AsSpan(0, n).SequenceEqual(shared.AsSpan(0, n)), $"shared memory differs from pmemsave in [0x{a:x}, +{n})");
                Assert.True(expected.AsSpan(0, n).SequenceEqual(viaProcess.AsSpan(0, n)), $"process memory differs from pmemsave in [0x{a:x}, +{n})");
            }

            // The page hashes of main RAM, all cores, from each source (in place, read, and from a file) are one answer.
            UInt128[] fromFile = PhysicalMemoryHash.HashPages(new PhysicalMemoryScan(dumped)).Single().Hashes;
            Assert.Equal(fromFile, PhysicalMemoryHash.HashPages(new PhysicalMemoryScan(live.Memory, [main])).Single().Hashes);
            Assert.Equal(fromFile, PhysicalMemoryHash.HashPages(new PhysicalMemoryScan(process, [main]) { MaxDegreeOfParallelism = 1 }).Single().Hashes);
            Assert.Contains(PhysicalMemoryHash.ZeroPage, fromFile);
            Assert.True(fromFile.Distinct().Count() > 1000);
        }
        finally
        {
            await live.Qmp.ExecuteAsync("cont");
        }
    }

    [Fact]
    public async Task SearchFindsTheMarkersStringAtTheAddressTheGuestReportsOnBothPaths()
    {
        await using LiveMachine live = await LiveMachine.AttachAsync(_guest.ToolQmpPath);
        GroundTruth.MarkerInfo marker = _guest.Truth.Marker!;
        byte[] needle = Encoding.ASCII.GetBytes(marker.Value);
        QemuProcessMemory process = await ProcessPathAsync(live);
        await live.Qmp.ExecuteAsync("stop");
        try
        {
            IReadOnlyList<ulong> shared = PhysicalMemorySearch.Find(live.Memory, needle);
            Assert.Contains(marker.PhysicalAddress, shared);
            Assert.Equal(shared, PhysicalMemorySearch.Find(process, needle, maxDegreeOfParallelism: 1));
            Assert.Equal([marker.PhysicalAddress], PhysicalMemorySearch.Find(live.Memory, needle, ranges: [new MemoryRange(marker.PhysicalAddress & ~0xfffUL, 0x1000, "page")]));

            // ReadMany: the marker's bytes among a thousand other scattered reads, in one batch.
            ulong[] addresses = [.. Enumerable.Range(0, 1000).Select(i => 0x100000UL + ((ulong)i * 0x3000)), marker.PhysicalAddress];
            byte[] items = new byte[addresses.Length * needle.Length];
            Assert.Equal(addresses.Length, process.ReadMany(addresses, needle.Length, items));
            Assert.Equal(marker.Value, Encoding.ASCII.GetString(items.AsSpan(1000 * needle.Length, needle.Length)));
        }
        finally
        {
            await live.Qmp.ExecuteAsync("cont");
        }
    }

    /// <summary>The process-memory path alone (the live machine serves shared-memory RAM from its mapping).</summary>
    private static async Task<QemuProcessMemory> ProcessPathAsync(LiveMachine live)
    {
        var ranges = new List<(MemoryRange, ulong)>();
        foreach (MemoryRange r in live.Memory.Ranges)
        {
            ulong? hva = HmpText.ParseGpa2Hva(await live.Qmp.HumanMonitorCommandAsync($"gpa2hva 0x{r.Start:x}"));
            ranges.Add((r, hva ?? throw new InvalidOperationException($"no gpa2hva for {r}")));
        }

        return new QemuProcessMemory(live.Memory.ProcessId, ranges);
    }
}
