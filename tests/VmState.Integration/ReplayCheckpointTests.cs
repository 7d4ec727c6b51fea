using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using VmState.Integration.Harness;
using VmState.Live;
using VmState.Replay;

namespace VmState.Integration;

/// <summary>
/// A short recording of the fixture guest without NICs (QEMU 7.2 loads snapshots in such a replay), stopped with
/// Ctrl-C right after the guest's /init printed its marker process, indexed with the default checkpoints (adaptive,
/// <c>rr index</c> without <c>--checkpoints</c>): short enough for CI, since every later replay loads the nearest
/// checkpoint instead of replaying from power-on.
/// </summary>
public sealed class CheckpointedRecording : IAsyncLifetime
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("vmstate-rrck-").FullName;

    public string Recording => Path.Combine(Dir, "rec");

    public string SerialPath => Path.Combine(Dir, "serial.log");

    public string Serial { get; private set; } = string.Empty;

    public ulong Instructions { get; private set; }

    public string IndexOutput { get; private set; } = string.Empty;

    public static List<string> Command(string serial)
    {
        GuestFixture f = GuestFixture.Ensure();
        return
        [
            "qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-m", "256", "-cpu", "qemu64", "-display", "none", "-vga", "std", "-no-reboot",
            "-kernel", f.Kernel, "-initrd", f.Initrd, "-append", "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check",
            "-device", "vmcoreinfo", "-serial", $"file:{serial}",
        ];
    }

    public async Task InitializeAsync()
    {
        Process record = VmStateCli.StartBackground(["rr", "record", "-o", Recording, "--", .. Command(SerialPath)]);
        try
        {
            Task<string> stderr = record.StandardError.ReadToEndAsync();
            Task<string> stdout = record.StandardOutput.ReadToEndAsync();
            var clock = Stopwatch.StartNew();
            while (!(File.Exists(SerialPath) && File.ReadAllText(SerialPath).Contains("VMSTATE-TRUTH marker ", StringComparison.Ordinal)))
            {
                Assert.False(record.HasExited, $"rr record exited early: {(record.HasExited ? await stderr : string.Empty)}");
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(240), $"the recorded guest printed no marker in 240 s: {(File.Exists(SerialPath) ? File.ReadAllText(SerialPath) : "(no console file)")}");
                await Task.Delay(100);
            }

            Interrupt(record);
            await record.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.True(record.ExitCode == 0, await stderr);
            Assert.Contains("instructions", await stdout, StringComparison.Ordinal);
            Serial = File.ReadAllText(SerialPath);
        }
        finally
        {
            if (!record.HasExited)
            {
                Interrupt(record);
                await record.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            }

            record.Dispose();
        }

        (int code, string info, string err) = VmStateCli.Run(["rr", "info", Recording, "--json"]);
        Assert.True(code == 0, err);
        using (JsonDocument doc = JsonDocument.Parse(info))
        {
            Instructions = doc.RootElement.GetProperty("instructionCount").GetUInt64();
        }

        // Twenty points, checkpoints by default (adaptive: where the replay since the last took 4x the last save, so
        // likely not at every point: the searches below start from irregularly spaced ones).
        (code, string stdoutIndex, string stderrIndex) = VmStateCli.Run(["rr", "index", Recording, "--every", (Instructions / 20).ToString(CultureInfo.InvariantCulture)]);
        Assert.True(code == 0, stderrIndex);
        IndexOutput = stdoutIndex;
    }

    private static void Interrupt(Process p)
    {
        using Process kill = Process.Start("kill", ["-INT", p.Id.ToString(CultureInfo.InvariantCulture)])!;
        kill.WaitForExit();
    }

    public Task DisposeAsync()
    {
        if (Environment.GetEnvironmentVariable("VMSTATE_KEEP_WORK") != "1")
        {
            Directory.Delete(Dir, recursive: true);
        }

        return Task.CompletedTask;
    }
}

public sealed class ReplayCheckpointTests(CheckpointedRecording rec) : IClassFixture<CheckpointedRecording>
{
    [Fact]
    public async Task FindThroughCheckpointsIsExactToOneInstruction()
    {
        Assert.Matches(@"points 2[01] \(every \d+ instructions", rec.IndexOutput);
        Match saved = Regex.Match(rec.IndexOutput, @"checkpoints (\d+) \(power-on, then where the replay since the last took 4x the last save\) .*; saving them took [\d.]+ s, [\d.]+x the replay");
        Assert.True(saved.Success, rec.IndexOutput);
        int count = int.Parse(saved.Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.True(count is >= 2 and <= 21, rec.IndexOutput);
        int marker = GroundTruth.Parse(rec.Serial).Marker!.Pid;

        // The index read the guest's processes at the end (a kernel located early in the boot once left every later
        // point without a view: its page-table root was the boot's first one).
        ReplayIndex index = ReplayIndex.TryLoad(ReplayRecording.Open(rec.Recording))!;
        Assert.Null(index.Points[^1].View.KernelError);
        Assert.Contains(index.Points[^1].View.Processes, p => p.Pid == 1);

        (int code, string stdout, string stderr) = VmStateCli.Run(["rr", "find", rec.Recording, "--process", "vmsmarker", "--json"]);
        Assert.True(code == 0, stderr);
        string result = Path.Combine(rec.Dir, "find.json");
        File.WriteAllText(result, stdout);
        ulong at;
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            at = doc.RootElement.GetProperty("icount").GetUInt64();
            Assert.True(at > doc.RootElement.GetProperty("coarseFrom").GetUInt64() && at <= doc.RootElement.GetProperty("coarseTo").GetUInt64(), stdout);
            // Every narrowing replay started from a checkpoint, not from power-on.
            Assert.Equal(doc.RootElement.GetProperty("replays").GetInt32(), doc.RootElement.GetProperty("checkpointLoads").GetInt32());
        }

        // A replay started from the checkpoint before and paused one instruction before the answer: no vmsmarker. One
        // instruction on: vmsmarker with the pid the guest printed.
        Process g = VmStateCli.StartBackground(["rr", "goto", rec.Recording, (at - 1).ToString(CultureInfo.InvariantCulture)]);
        Task<string> gotoErr = g.StandardError.ReadToEndAsync();
        try
        {
            string? paused = await g.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(180));
            Assert.True(paused == $"paused at instruction {at - 1}", $"{paused}\n{(g.HasExited ? await gotoErr : string.Empty)}");
            string qmp = (await g.StandardOutput.ReadLineAsync())!["qmp ".Length..];
            Assert.StartsWith("gdb tcp:127.0.0.1:", await g.StandardOutput.ReadLineAsync(), StringComparison.Ordinal);
            Assert.DoesNotContain(Processes(qmp), p => p.Comm == "vmsmarker");

            await using (QmpClient client = await QmpClient.ConnectAsync(qmp))
            {
                await client.ExecuteAsync("replay-break", new System.Text.Json.Nodes.JsonObject { ["icount"] = at });
                await client.ContAsync();
                var clock = Stopwatch.StartNew();
                while (await client.QueryStatusAsync() == "running" && clock.Elapsed < TimeSpan.FromSeconds(60))
                {
                    await Task.Delay(50);
                }

                Assert.Equal(at, (await client.ExecuteAsync("query-replay")).GetProperty("icount").GetUInt64());
            }

            Assert.Contains(Processes(qmp), p => p.Comm == "vmsmarker" && p.Pid == marker);
            using (Process kill = Process.Start("kill", ["-INT", g.Id.ToString(CultureInfo.InvariantCulture)])!)
            {
                await kill.WaitForExitAsync();
            }

            await g.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            string err = await gotoErr;
            Assert.True(g.ExitCode == 0, err);
            Assert.Matches(@"vmstate rr goto: QEMU \d+ replaying .*; started from checkpoint \d+", err);
        }
        finally
        {
            if (!g.HasExited)
            {
                g.Kill(entireProcessTree: true);
                await g.WaitForExitAsync();
            }

            g.Dispose();
        }
    }

    [Fact]
    public async Task FindBreakBeforeIsTheLastHitBeforeTheCount()
    {
        ulong t = rec.Instructions - 1;
        string ts = t.ToString(CultureInfo.InvariantCulture);
        (int code, string stdout, string stderr) = VmStateCli.Run(["rr", "find", rec.Recording, "--break", "do_sys_openat2", "--before", ts, "--json"]);
        Assert.True(code == 0, stderr);
        ulong at;
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            at = doc.RootElement.GetProperty("icount").GetUInt64();
        }

        Assert.True(at < t, stdout);

        // Checked through QEMU's own stub and QMP, not rr find's windows: the replay paused at the answer stands at the
        // symbol's entry; with a breakpoint there, one step and a replay-break at T, gdb's continue stops at T itself
        // (QMP's query-replay while gdb still holds the VM), so no hit lies in answer+1 .. T-1.
        Process g = VmStateCli.StartBackground(["rr", "goto", rec.Recording, at.ToString(CultureInfo.InvariantCulture)]);
        Task<string> gotoErr = g.StandardError.ReadToEndAsync();
        try
        {
            string? paused = await g.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(300));
            Assert.True(paused == $"paused at instruction {at}", $"{paused}\n{(g.HasExited ? await gotoErr : string.Empty)}");
            string qmp = (await g.StandardOutput.ReadLineAsync())!["qmp ".Length..];
            int port = int.Parse((await g.StandardOutput.ReadLineAsync())!["gdb tcp:127.0.0.1:".Length..], CultureInfo.InvariantCulture);

            ulong entry = SymbolAddress(qmp, "do_sys_openat2");

            await using GdbSession gdb = await GdbSession.StartAsync(port, TimeSpan.FromSeconds(120));
            string first = await gdb.RunAsync(["p/x $pc", string.Create(CultureInfo.InvariantCulture, $"break *0x{entry:x}"), "stepi"], TimeSpan.FromSeconds(120));
            Match pc = Regex.Match(first, @"\$1 = 0x([0-9a-f]+)");
            Assert.True(pc.Success, first);
            Assert.Equal(entry, ulong.Parse(pc.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture));
            Assert.Equal(at + 1, await IcountAsync(qmp));

            await using (QmpClient client = await QmpClient.ConnectAsync(qmp))
            {
                await ReplayQmp.BreakAsync(client, t);
            }

            // Generous: from the answer to T is a short run, but a loaded CI machine replays slowly.
            string cont = await gdb.RunAsync(["continue"], TimeSpan.FromSeconds(300));
            // A hit before T would have stopped gdb there, below T (and a hit at T itself is not one before it).
            ulong stopped = await IcountAsync(qmp);
            Assert.True(stopped == t, $"gdb's continue from the answer {at} stopped at instruction {stopped}, not at T {t}:\n{cont}");
            // gdb's connection holds on after the stop: its own view of the count agrees.
            string info = await gdb.RunAsync(["monitor info replay"], TimeSpan.FromSeconds(60));
            Assert.Contains($"instruction count = {ts}", info, StringComparison.Ordinal);
        }
        finally
        {
            if (!g.HasExited)
            {
                g.Kill(entireProcessTree: true);
                await g.WaitForExitAsync();
            }

            g.Dispose();
        }
    }

    [Fact]
    public async Task FindBreakWithPidAndHitIsThatPidsNthHit()
    {
        // Issue 14's proof: `rr find --break SYMBOL --pid N --hit K` returns the instruction count of pid N's K-th call of
        // SYMBOL. Checked by a forward pass of QEMU's own stub from the point rr find counts from: gdb stops at every
        // call (every pid), the task on the (single) vCPU is read at each stop, and pid N's second stop is at the answer.
        int marker = GroundTruth.Parse(rec.Serial).Marker!.Pid;
        (int code, string stdout, string stderr) = VmStateCli.Run(["rr", "find", rec.Recording, "--break", "do_sys_openat2", "--pid", marker.ToString(CultureInfo.InvariantCulture), "--hit", "2", "--json"]);
        Assert.True(code == 0, stderr);
        ulong at, from;
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            at = doc.RootElement.GetProperty("icount").GetUInt64();
            JsonElement coarse = doc.RootElement.GetProperty("coarseFrom");
            Assert.True(coarse.ValueKind == JsonValueKind.Number, stdout);
            from = coarse.GetUInt64();
        }

        Assert.True(from < at, $"rr find counted from {from}, after its answer {at}");
        Process g = VmStateCli.StartBackground(["rr", "goto", rec.Recording, from.ToString(CultureInfo.InvariantCulture)]);
        Task<string> gotoErr = g.StandardError.ReadToEndAsync();
        try
        {
            string? paused = await g.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(300));
            Assert.True(paused == $"paused at instruction {from}", $"{paused}\n{(g.HasExited ? await gotoErr : string.Empty)}");
            string qmp = (await g.StandardOutput.ReadLineAsync())!["qmp ".Length..];
            int port = int.Parse((await g.StandardOutput.ReadLineAsync())!["gdb tcp:127.0.0.1:".Length..], CultureInfo.InvariantCulture);
            ulong entry = SymbolAddress(qmp, "do_sys_openat2");

            await using GdbSession gdb = await GdbSession.StartAsync(port, TimeSpan.FromSeconds(120));
            await gdb.RunAsync([string.Create(CultureInfo.InvariantCulture, $"break *0x{entry:x}")], TimeSpan.FromSeconds(60));
            var stops = new List<(ulong Icount, int? Pid)>();
            int mine = 0;
            while (mine < 2)
            {
                Assert.True(stops.Count < 500, $"no second call by pid {marker} in 500 stops: {string.Join(", ", stops)}");
                string cont = await gdb.RunAsync(["continue", "p/x $pc"], TimeSpan.FromSeconds(300));
                Match pc = Regex.Match(cont, @"\$\d+ = 0x([0-9a-f]+)");
                Assert.True(pc.Success && ulong.Parse(pc.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture) == entry, cont);
                ulong icount = await IcountAsync(qmp);
                (code, string info, stderr) = VmStateCli.Run(["kernel-info", "--qmp", qmp, "--json"]);
                Assert.True(code == 0, stderr);
                int? pid;
                using (JsonDocument doc = JsonDocument.Parse(info))
                {
                    JsonElement cpu0 = doc.RootElement.GetProperty("cpus")[0];
                    pid = cpu0.GetProperty("currentPid").ValueKind == JsonValueKind.Number ? cpu0.GetProperty("currentPid").GetInt32() : null;
                }

                stops.Add((icount, pid));
                Assert.True(icount <= at, $"pid {marker}'s call #{mine + 1} was not at or before rr find's answer {at}: {string.Join(", ", stops)}");
                if (pid == marker)
                {
                    mine++;
                }
            }

            Assert.Equal(at, stops[^1].Icount);
        }
        finally
        {
            if (!g.HasExited)
            {
                g.Kill(entireProcessTree: true);
                await g.WaitForExitAsync();
            }

            g.Dispose();
        }
    }

    /// <summary>A kernel symbol's address in the paused replay (<c>vmstate symbols --qmp</c>).</summary>
    private static ulong SymbolAddress(string qmp, string name)
    {
        (int code, string symbols, string stderr) = VmStateCli.Run(["symbols", "--qmp", qmp]);
        Assert.True(code == 0, stderr);
        return symbols.Split('\n').Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length >= 3 && f[2] == name).Select(f => ulong.Parse(f[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture)).First();
    }

    /// <summary>The paused replay's instruction count (QMP query-replay on rr goto's socket).</summary>
    private static async Task<ulong> IcountAsync(string qmp)
    {
        await using QmpClient client = await QmpClient.ConnectAsync(qmp);
        return await ReplayQmp.IcountAsync(client);
    }

    private static List<(int Pid, string Comm)> Processes(string qmp)
    {
        (int code, string ps, string err) = VmStateCli.Run(["ps", "--qmp", qmp, "--json"]);
        Assert.True(code == 0, err);
        return ParseProcesses(ps);
    }

    private static List<(int Pid, string Comm)> ParseProcesses(string json)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        JsonElement list = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement : doc.RootElement.GetProperty("processes");
        return [.. list.EnumerateArray().Select(p => (p.GetProperty("pid").GetInt32(), p.GetProperty("comm").GetString()!))];
    }
}
