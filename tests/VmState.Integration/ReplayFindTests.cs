using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Live;

namespace VmState.Integration;

/// <summary>
/// The fixture recording indexed once (<c>rr index</c>), then exact answers: <c>rr find --process</c> returns the
/// instruction count where the marker process first shows in <c>ps</c> (and one earlier it does not), <c>rr find
/// --break</c> the count of a breakpoint hit where gdb shows RIP at the symbol (<c>rr goto</c>).
/// </summary>
public sealed class IndexedRecording : IAsyncLifetime
{
    private readonly FixtureRecording _recording = new();

    public FixtureRecording Recording => _recording;

    public string IndexOutput { get; private set; } = string.Empty;

    public async Task InitializeAsync()
    {
        await _recording.InitializeAsync();
        // About 40 points: a short index pass, intervals small enough for three or four narrowing replays.
        ulong every = _recording.Instructions / 40;
        (int code, string stdout, string stderr) = VmStateCli.Run(["rr", "index", _recording.Recording, "--every", every.ToString(CultureInfo.InvariantCulture)]);
        Assert.True(code == 0, stderr);
        IndexOutput = stdout;
    }

    public Task DisposeAsync() => _recording.DisposeAsync();
}

[Trait("Category", "Slow")]
public sealed class ReplayFindTests(IndexedRecording indexed) : IClassFixture<IndexedRecording>
{
    private FixtureRecording Rec => indexed.Recording;

    [Fact]
    public async Task FindReturnsTheInstructionWhereTheMarkerProcessAppearsExactlyToOne()
    {
        Assert.Matches(@"points 4[01] \(every \d+ instructions; the guest kernel read at \d+\)", indexed.IndexOutput);
        Assert.True(File.Exists(Path.Combine(Rec.Recording, "index.vmsrr")));
        GroundTruth truth = GroundTruth.Parse(Rec.Serial);
        int marker = truth.Marker!.Pid;

        string result = Path.Combine(Rec.Dir, "find.json");
        (int code, string stdout, string stderr) = VmStateCli.Run(["rr", "find", Rec.Recording, "--process", "vmsmarker", "--json"]);
        Assert.True(code == 0, stderr);
        File.WriteAllText(result, stdout);
        ulong at;
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            at = doc.RootElement.GetProperty("icount").GetUInt64();
            Assert.True(at > doc.RootElement.GetProperty("coarseFrom").GetUInt64() && at <= doc.RootElement.GetProperty("coarseTo").GetUInt64());
        }

        // One instruction before the answer no process is named vmsmarker; run on by one instruction and it is there.
        await using Goto g = await Goto.StartAsync(Rec, (at - 1).ToString(CultureInfo.InvariantCulture));
        Assert.Equal(at - 1, g.At);
        Assert.DoesNotContain(Processes(g.Qmp), p => p.Comm == "vmsmarker");
        await using (QmpClient client = await QmpClient.ConnectAsync(g.Qmp))
        {
            await client.ExecuteAsync("replay-break", new System.Text.Json.Nodes.JsonObject { ["icount"] = at });
            await client.ContAsync();
            var clock = Stopwatch.StartNew();
            while (await client.QueryStatusAsync() == "running" && clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(50);
            }

            Assert.Equal(at, (await client.ExecuteAsync("query-replay")).GetProperty("icount").GetUInt64());
        }

        Assert.Contains(Processes(g.Qmp), p => p.Comm == "vmsmarker" && p.Pid == marker);
        await g.InterruptAsync();
    }

    [Fact]
    public async Task ABreakpointPredicateReturnsTheHitWhereGdbShowsRipAtTheSymbol()
    {
        GroundTruth truth = GroundTruth.Parse(Rec.Serial);
        int marker = truth.Marker!.Pid;
        (int code, string stdout, string stderr) = VmStateCli.Run(["rr", "find", Rec.Recording, "--break", "do_sys_openat2", "--pid", marker.ToString(CultureInfo.InvariantCulture), "--hit", "2", "--json"]);
        Assert.True(code == 0, stderr);
        string result = Path.Combine(Rec.Dir, "break.json");
        File.WriteAllText(result, stdout);

        await using Goto g = await Goto.StartAsync(Rec, "@" + result);
        Assert.NotNull(g.GdbPort);
        var gdb = new ProcessStartInfo("gdb") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in (string[])["-nx", "-batch", "-ex", $"target remote 127.0.0.1:{g.GdbPort}", "-ex", "p/x $pc"])
        {
            gdb.ArgumentList.Add(a);
        }

        using Process p = Process.Start(gdb)!;
        string gdbOut = await p.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(120));
        await p.WaitForExitAsync();
        string pc = gdbOut.Split('\n').Single(l => l.StartsWith("$1 = ", StringComparison.Ordinal))["$1 = ".Length..].Trim();

        (code, string sym, stderr) = VmStateCli.Run(["symbols", "--qmp", g.Qmp, "--address", pc]);
        Assert.True(code == 0, stderr);
        // "ADDRESS SYMBOL+0xOFFSET (TYPE, symbol at ADDRESS)"
        Assert.Equal("do_sys_openat2+0x0", sym.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
        await g.InterruptAsync();
    }

    private static List<(int Pid, string Comm)> Processes(string qmp)
    {
        (int code, string ps, string err) = VmStateCli.Run(["ps", "--qmp", qmp, "--json"]);
        Assert.True(code == 0, err);
        using JsonDocument doc = JsonDocument.Parse(ps);
        JsonElement list = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement : doc.RootElement.GetProperty("processes");
        return [.. list.EnumerateArray().Select(p => (p.GetProperty("pid").GetInt32(), p.GetProperty("comm").GetString()!))];
    }

    /// <summary><c>vmstate rr goto</c> running in the background, paused; Ctrl-C ends it and its QEMU.</summary>
    private sealed class Goto : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly Task<string> _stderr;

        private Goto(Process process, Task<string> stderr)
        {
            _process = process;
            _stderr = stderr;
        }

        public ulong At { get; private set; }

        public string Qmp { get; private set; } = string.Empty;

        public int? GdbPort { get; private set; }

        public static async Task<Goto> StartAsync(FixtureRecording rec, string target)
        {
            Process process = VmStateCli.StartBackground(["rr", "goto", rec.Recording, target]);
            var g = new Goto(process, process.StandardError.ReadToEndAsync());
            string? paused = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(300));
            Assert.True(paused?.StartsWith("paused at instruction ", StringComparison.Ordinal) == true, $"{paused}\n{(process.HasExited ? await g._stderr : string.Empty)}");
            g.At = ulong.Parse(paused!["paused at instruction ".Length..], CultureInfo.InvariantCulture);
            g.Qmp = (await process.StandardOutput.ReadLineAsync())!["qmp ".Length..];
            string gdb = (await process.StandardOutput.ReadLineAsync())!;
            Assert.StartsWith("gdb tcp:127.0.0.1:", gdb, StringComparison.Ordinal);
            g.GdbPort = int.Parse(gdb["gdb tcp:127.0.0.1:".Length..], CultureInfo.InvariantCulture);
            Assert.Equal($"  vmstate ps --qmp {g.Qmp}", await process.StandardOutput.ReadLineAsync());
            Assert.Equal($"  gdb -ex 'target remote 127.0.0.1:{g.GdbPort}'", await process.StandardOutput.ReadLineAsync());
            return g;
        }

        /// <summary>Ctrl-C: the replay's QEMU is quit and goto exits 0.</summary>
        public async Task InterruptAsync()
        {
            using (Process kill = Process.Start("kill", ["-INT", _process.Id.ToString(CultureInfo.InvariantCulture)]))
            {
                await kill.WaitForExitAsync();
            }

            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            string err = await _stderr;
            Assert.True(_process.ExitCode == 0, err);
            Assert.Contains("vmstate rr goto: stopped", err, StringComparison.Ordinal);
            int qemu = int.Parse(System.Text.RegularExpressions.Regex.Matches(err, @"vmstate rr goto: QEMU (\d+) replaying")[^1].Groups[1].Value, CultureInfo.InvariantCulture);
            var clock = Stopwatch.StartNew();
            while (Directory.Exists($"/proc/{qemu}") && clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                await Task.Delay(100);
            }

            Assert.False(Directory.Exists($"/proc/{qemu}"), $"QEMU {qemu} still runs after rr goto stopped");
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }

            _process.Dispose();
        }
    }
}
