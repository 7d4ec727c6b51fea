using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using VmState.History;
using VmState.Integration.Harness;
using VmState.Live;
using Xunit.Abstractions;

namespace VmState.Integration;

/// <summary>
/// <c>vmstate record</c> on a running fixture guest: captures streamed from QEMU into a history store, each of its own
/// moment (the kernel's jiffies grow from capture to capture), each readable as <c>STORE@N</c>; the store verifies, and
/// the guest keeps running with no migration left active, also after Ctrl-C in the middle of a recording.
/// </summary>
public sealed class RecordTests(FrontDoorGuest fixture, ITestOutputHelper output) : IClassFixture<FrontDoorGuest>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-record-it-").FullName;

    private QemuGuest Guest => fixture.Guest;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private async Task AssertRunningWithNoMigrationAsync()
    {
        Assert.Equal("running", await Guest.Qmp.QueryStatusAsync());
        JsonElement migration = await Guest.Qmp.ExecuteAsync("query-migrate");
        Assert.False(QemuMonitor.IsMigrationActive(migration), migration.GetRawText());
        int from = Guest.SerialLineCount;
        await Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), from);
    }

    private static ulong Jiffies(string capture)
    {
        // "ffffffffb74079c0  21 e5 fe ff 00 00 00 00    |!.......|": the eight bytes, little-endian.
        (int code, string stdout, string stderr) = VmStateCli.Run(["read", capture, "jiffies", "8", "--sym", "-f", "hex"]);
        Assert.True(code == 0, stderr);
        byte[] bytes = [.. stdout.Split("  ", StringSplitOptions.RemoveEmptyEntries)[1].Split(' ').Take(8).Select(b => byte.Parse(b, NumberStyles.HexNumber, CultureInfo.InvariantCulture))];
        return BitConverter.ToUInt64(bytes);
    }

    [Fact]
    public async Task CapturesAreOfTheirOwnMomentsAndEachReadsAsASnapshot()
    {
        string store = Path.Combine(_dir, "store");
        (int code, string stdout, string stderr) = VmStateCli.Run(["record", "--qmp", Guest.ToolQmpPath, "--store", store, "--every", "1", "--count", "3", "--json"]);
        Assert.True(code == 0, stderr);
        JsonElement[] lines = [.. stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement)];
        Assert.Equal([1, 2, 3], lines.Select(l => l.GetProperty("capture").GetInt32()));
        Assert.All(lines, l => Assert.Equal("BackgroundSnapshot", l.GetProperty("mode").GetString()));
        Assert.All(lines, l => Assert.True(l.GetProperty("guestPauseMs").GetDouble() >= 0));
        Assert.True(lines[1].GetProperty("newPages").GetInt64() < lines[0].GetProperty("newPages").GetInt64(), "the second capture of an idle guest must share most pages with the first");
        await AssertRunningWithNoMigrationAsync();

        (code, _, stderr) = VmStateCli.Run(["history", "verify", store]);
        Assert.True(code == 0, stderr);

        // Each capture is its own moment: jiffies grow (the captures are at least a second apart).
        ulong[] jiffies = [Jiffies(store + "@1"), Jiffies(store + "@2"), Jiffies(store + "@3")];
        Assert.True(jiffies[0] < jiffies[1] && jiffies[1] < jiffies[2], string.Join(", ", jiffies));

        (code, string ps, stderr) = VmStateCli.Run(["ps", store + "@-1"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("/bin/vmsmarker", ps, StringComparison.Ordinal);
    }

    private Dictionary<string, string> MarkerFields()
    {
        string line = Guest.SerialText.Split('\n').Select(l => l.TrimEnd('\r')).First(l => l.StartsWith("VMSTATE-TRUTH marker ", StringComparison.Ordinal));
        return line["VMSTATE-TRUTH marker ".Length..].Split(' ').Select(kv => kv.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv[1]);
    }

    private static ulong HexField(string text) => ulong.Parse(text.StartsWith("0x", StringComparison.Ordinal) ? text[2..] : text, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);

    /// <summary>Writes <paramref name="bytes"/> at a guest-physical address through QEMU's memory.</summary>
    private async Task WriteGuestAsync(ulong paddr, byte[] bytes)
    {
        await using LiveMachine live = await LiveMachine.AttachAsync(Guest.Qmp, ownsClient: false);
        Assert.Equal(bytes.Length, live.Memory.Write(paddr, bytes));
    }

    /// <summary>Asks the marker for request <paramref name="request"/> and waits for the line it prints when done.</summary>
    private async Task<string> RequestAsync(ulong request, string donePrefix)
    {
        int from = Guest.SerialLineCount;
        await WriteGuestAsync(HexField(MarkerFields()["g_request_paddr"]), BitConverter.GetBytes(request));
        return (await Guest.WaitForSerialLineAsync(l => l.StartsWith(donePrefix, StringComparison.Ordinal), TimeSpan.FromSeconds(60), from)).TrimEnd('\r');
    }

    private void RecordOne(string store)
    {
        (int code, _, string stderr) = VmStateCli.Run(["record", "--qmp", Guest.ToolQmpPath, "--store", store, "--count", "1"]);
        Assert.True(code == 0, stderr);
    }

    /// <summary>The first VMSTATE-TICK the guest prints from now on (so it is written after whatever came before).</summary>
    private async Task<int> NextTickAsync()
    {
        string line = await Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), Guest.SerialLineCount);
        return int.Parse(line.TrimEnd('\r')["VMSTATE-TICK ".Length..], CultureInfo.InvariantCulture);
    }

    private static JsonElement Json(params string[] args)
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(args);
        Assert.True(code is 0 or 1, stderr);
        return JsonDocument.Parse(stdout).RootElement;
    }

    private static int[] Hits(JsonElement find) => [.. find.GetProperty("hits").EnumerateArray().Select(h => h.GetProperty("capture").GetInt32())];

    /// <summary>
    /// 21 captures while the guest changes known things on a fixed schedule (printed to the test output), each change
    /// confirmed by the guest's own ground-truth line before the capture it is meant for: a process (the marker's spawn
    /// request) starts before capture 4 and is killed before 9, a second one lives from 15 to 19; a kernel log line
    /// (the init's VMSTATE-KTICK, noted before capture 4's spawn) is new in capture 4; eight random bytes are written
    /// into the marker's g_value before capture 12 and replaced by eight others before 18. history diff and history
    /// find (CLI) report exactly those changes at exactly those captures.
    /// </summary>
    [Fact]
    public async Task DiffAndFindReportWhatTheGuestChangedOnAScheduleOver21Captures()
    {
        const int Captures = 21;
        string store = Path.Combine(_dir, "timeline");
        output.WriteLine("schedule: before capture 4 a process A starts (and a KTICK line is noted), before 9 A is killed, before 12 value V1 is written into g_value, before 15 a process B starts, before 18 V2 replaces V1, before 20 B is killed; 21 captures");
        int tick = 0;
        int pidA = 0;
        int pidB = 0;
        byte[] v1 = RandomNumberGenerator.GetBytes(8);
        byte[] v2 = RandomNumberGenerator.GetBytes(8);
        await using (LiveMachine live = await LiveMachine.AttachAsync(Guest.Qmp, ownsClient: false))
        using (HistoryStoreWriter writer = HistoryStoreWriter.Open(store))
        {
            for (int n = 1; n <= Captures; n++)
            {
                switch (n)
                {
                    case 4:
                        tick = await NextTickAsync();
                        pidA = await SpawnAsync();
                        break;
                    case 9:
                        await RequestAsync(7 | ((ulong)pidA << 8), $"VMSMARKER killed pid={pidA}");
                        break;
                    case 12:
                        await WriteGuestAsync(HexField(MarkerFields()["g_value_paddr"]), v1);
                        break;
                    case 15:
                        pidB = await SpawnAsync();
                        break;
                    case 18:
                        await WriteGuestAsync(HexField(MarkerFields()["g_value_paddr"]), v2);
                        break;
                    case 20:
                        await RequestAsync(7 | ((ulong)pidB << 8), $"VMSMARKER killed pid={pidB}");
                        break;
                }

                IReadOnlyList<RecordedCapture> taken = await HistoryRecorder.RecordAsync(live, writer, new HistoryRecordOptions { Count = 1, Every = TimeSpan.Zero, Source = "RecordTests" });
                Assert.Equal(n, Assert.Single(taken).Capture.Number);
                output.WriteLine($"capture {n}: guest pause {taken[0].Save.GuestPause?.TotalMilliseconds:F1} ms, wall {taken[0].Save.Elapsed.TotalMilliseconds:F0} ms");
            }
        }

        output.WriteLine($"A = pid {pidA}, B = pid {pidB}, KTICK {tick}, V1 {Convert.ToHexString(v1)}, V2 {Convert.ToHexString(v2)}");
        static int[] Range(int from, int to) => [.. Enumerable.Range(from, to - from + 1)];
        int[] all = Range(1, Captures);

        // Processes: by pid, by name (both live ones), absent; started and exited in the diffs of exactly their captures.
        JsonElement byPid = Json("history", "find", store, "--process", pidA.ToString(CultureInfo.InvariantCulture), "--json");
        Assert.Equal(Range(4, 8), Hits(byPid));
        Assert.Equal(4, byPid.GetProperty("first").GetInt32());
        Assert.Equal(0, byPid.GetProperty("pagesRead").GetInt64());
        Assert.Equal(Range(15, 19), Hits(Json("history", "find", store, "--process", pidB.ToString(CultureInfo.InvariantCulture), "--json")));
        int[] named = [.. Range(4, 8), .. Range(15, 19)];
        Assert.Equal(named, Hits(Json("history", "find", store, "--process", "vmsd-epsilon", "--json")));
        Assert.Equal(all.Except(named), Hits(Json("history", "find", store, "--process", "vmsd-epsilon", "--absent", "--json")));

        JsonElement d34 = Json("history", "diff", store, "3", "4", "--json");
        JsonElement started = Assert.Single(d34.GetProperty("started").EnumerateArray(), p => p.GetProperty("comm").GetString() == "vmsd-epsilon");
        Assert.Equal(pidA, started.GetProperty("pid").GetInt32());
        Assert.Contains(d34.GetProperty("newLogLines").EnumerateArray(), l => l.GetProperty("text").GetString() == $"VMSTATE-KTICK {tick}");
        Assert.True(d34.GetProperty("changedPages").GetInt64() > 0);
        Assert.Contains(d34.GetProperty("processPages").EnumerateArray(), p => p.GetProperty("pid").GetInt32() == pidA && p.GetProperty("mappedPages").GetInt64() > 0);
        Assert.DoesNotContain(d34.GetProperty("exited").EnumerateArray(), p => p.GetProperty("comm").GetString() == "vmsd-epsilon");

        JsonElement d89 = Json("history", "diff", store + "@8", store + "@9", "--json");
        Assert.Equal(pidA, Assert.Single(d89.GetProperty("exited").EnumerateArray(), p => p.GetProperty("comm").GetString() == "vmsd-epsilon").GetProperty("pid").GetInt32());
        Assert.DoesNotContain(d89.GetProperty("started").EnumerateArray(), p => p.GetProperty("comm").GetString() == "vmsd-epsilon");
        JsonElement d1415 = Json("history", "diff", store, "14", "15", "--json");
        Assert.Equal(pidB, Assert.Single(d1415.GetProperty("started").EnumerateArray(), p => p.GetProperty("comm").GetString() == "vmsd-epsilon").GetProperty("pid").GetInt32());
        JsonElement d1920 = Json("history", "diff", store, "19", "20", "--json");
        Assert.Equal(pidB, Assert.Single(d1920.GetProperty("exited").EnumerateArray(), p => p.GetProperty("comm").GetString() == "vmsd-epsilon").GetProperty("pid").GetInt32());

        // Across the whole recording A and B came and went: neither is started nor exited from capture 1 to 21.
        JsonElement d121 = Json("history", "diff", store, "1", "21", "--json");
        Assert.DoesNotContain(d121.GetProperty("started").EnumerateArray(), p => p.GetProperty("comm").GetString() == "vmsd-epsilon");
        Assert.DoesNotContain(d121.GetProperty("exited").EnumerateArray(), p => p.GetProperty("comm").GetString() == "vmsd-epsilon");

        // The kernel log line, the marker's value, the kernel's tick counter.
        Assert.Equal(4, Json("history", "find", store, "--log", $"^VMSTATE-KTICK {tick}$", "--json").GetProperty("first").GetInt32());
        // V1 is in g_value from capture 12 to 17; once V2 replaces it, a stale copy the marker made of it (it reads
        // g_value every tick) may outlive it for a capture or two, so after 17 V1 is only checked not to be in g_value.
        ulong gValue = HexField(MarkerFields()["g_value_paddr"]);
        string inValue = $"at physical 0x{gValue:x}";
        JsonElement[] v1Hits = [.. Json("history", "find", store, "--bytes", Convert.ToHexString(v1), "--json").GetProperty("hits").EnumerateArray()];
        Assert.Equal(Range(12, 17), v1Hits.Select(h => h.GetProperty("capture").GetInt32()).Where(n => n <= 17));
        Assert.All(v1Hits.Where(h => h.GetProperty("capture").GetInt32() > 17), h => Assert.NotEqual(inValue, h.GetProperty("detail").GetString()));
        JsonElement[] v2Hits = [.. Json("history", "find", store, "--bytes", Convert.ToHexString(v2), "--json").GetProperty("hits").EnumerateArray()];
        Assert.Equal(Range(18, 21), v2Hits.Select(h => h.GetProperty("capture").GetInt32()));
        Assert.Equal(all, Hits(Json("history", "find", store, "--symbol", "jiffies", "--changed", "--json")));

        (int code, _, string stderr) = VmStateCli.Run(["history", "verify", store]);
        Assert.True(code == 0, stderr);
    }

    /// <summary>Asks the marker to start a child process (comm vmsd-epsilon); its pid.</summary>
    private async Task<int> SpawnAsync()
    {
        string spawned = await RequestAsync(6, "VMSMARKER spawn ");
        Assert.EndsWith("comm=vmsd-epsilon", spawned, StringComparison.Ordinal);
        return int.Parse(spawned.Split(' ')[2]["pid=".Length..], CultureInfo.InvariantCulture);
    }

    private static int MarkerTick(string line) => int.Parse(line.TrimEnd('\r')["VMSMARKER tick=".Length..].Split(' ')[0], CultureInfo.InvariantCulture);

    private int LastMarkerTick() => Guest.SerialText.Split('\n').Where(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal)).Select(MarkerTick).DefaultIfEmpty(-1).Last();

    /// <summary>
    /// history rollback takes the running guest back to a capture in place: the marker's tick counter, printed once a
    /// second, goes back to its value at the capture and counts on from there, and the guest keeps running.
    /// </summary>
    [Fact]
    public async Task RollbackTakesTheRunningGuestBackToACapture()
    {
        string store = Path.Combine(_dir, "rollback");
        int before = LastMarkerTick();
        RecordOne(store);
        int after = LastMarkerTick();
        Assert.True(before >= 0 && after >= before, $"{before} {after}");
        await Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal) && MarkerTick(l) >= after + 5, TimeSpan.FromSeconds(60));

        int from = Guest.SerialLineCount;
        (int code, string stdout, string stderr) = VmStateCli.Run(["history", "rollback", "--qmp", Guest.ToolQmpPath, store + "@1", "--json"]);
        Assert.True(code == 0, stderr);
        Assert.True(JsonDocument.Parse(stdout).RootElement.GetProperty("running").GetBoolean(), stdout);

        // Ticks printed before the load are past after + 5; the first one after it is the capture's tick + 1.
        string line = await Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal) && MarkerTick(l) <= after + 2, TimeSpan.FromSeconds(60), from);
        Assert.InRange(MarkerTick(line), before + 1, after + 2);
        await Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal) && MarkerTick(l) == MarkerTick(line) + 1, TimeSpan.FromSeconds(60), from);
        await AssertRunningWithNoMigrationAsync();
    }

    [Fact]
    public async Task CtrlCInTheMiddleKeepsTheCommittedCapturesAndTheGuestRunning()
    {
        string store = Path.Combine(_dir, "interrupted");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vmstate.dll"));
        foreach (string a in (string[])["record", "--qmp", Guest.ToolQmpPath, "--store", store, "--every", "0", "--json"])
        {
            psi.ArgumentList.Add(a);
        }

        using Process record = Process.Start(psi)!;
        string? first = await record.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
        Assert.NotNull(first);
        using (Process kill = Process.Start("kill", ["-INT", record.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        string rest = await record.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(120));
        await record.WaitForExitAsync();
        Assert.Equal(0, record.ExitCode);
        int committed = 1 + rest.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;

        (int code, string list, string stderr) = VmStateCli.Run(["history", "list", store, "--json"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(committed, JsonDocument.Parse(list).RootElement.GetProperty("captures").GetArrayLength());
        (code, _, stderr) = VmStateCli.Run(["history", "verify", store]);
        Assert.True(code == 0, stderr);
        await AssertRunningWithNoMigrationAsync();
    }

    [Fact]
    public async Task ARecorderKilledInTheMiddleOfACaptureLeavesAStoreThatVerifiesAndTheGuestRunning()
    {
        string store = Path.Combine(_dir, "killed");
        using Process record = VmStateCli.StartBackground(["record", "--qmp", Guest.ToolQmpPath, "--store", store, "--every", "0", "--json"]);
        try
        {
            // Captures back to back: after the first one is committed, the next is under way when SIGKILL arrives.
            string? first = await record.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
            Assert.NotNull(first);
            await Task.Delay(150);
        }
        finally
        {
            // SIGKILL of the recorder alone, as the OOM killer or `kill -9 PID` would (its capture guard lives on).
            record.Kill(entireProcessTree: false);
            await record.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }

        // The store is as it was after its last committed capture (the writer that was cut off left nothing readable),
        // the next writer can append to it, and the guest was not left paused or in a migration.
        (int code, string list, string stderr) = VmStateCli.Run(["history", "verify", store]);
        Assert.True(code == 0, stderr + list);
        (code, list, stderr) = VmStateCli.Run(["history", "list", store, "--json"]);
        Assert.True(code == 0, stderr);
        int committed = JsonDocument.Parse(list).RootElement.GetProperty("captures").GetArrayLength();
        Assert.True(committed >= 1, list);
        await WaitForNoMigrationAsync();
        await AssertRunningWithNoMigrationAsync();
        (code, string more, stderr) = VmStateCli.Run(["record", "--qmp", Guest.ToolQmpPath, "--store", store, "--count", "1", "--json"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(committed + 1, JsonDocument.Parse(more.Split('\n')[0]).RootElement.GetProperty("capture").GetInt32());
        (code, _, stderr) = VmStateCli.Run(["history", "verify", store]);
        Assert.True(code == 0, stderr);
    }

    /// <summary>A migration whose reader was killed fails on QEMU's side after a moment; wait for that (at most 60 s).</summary>
    private async Task WaitForNoMigrationAsync()
    {
        var clock = Stopwatch.StartNew();
        while (QemuMonitor.IsMigrationActive(await Guest.Qmp.ExecuteAsync("query-migrate")) && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            await Task.Delay(100);
        }
    }
}
