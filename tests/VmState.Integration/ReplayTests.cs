using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Live;

namespace VmState.Integration;

/// <summary>
/// One recording of the fixture guest (one vCPU, 256 MiB, both NICs behind filter-replay) from power-on until its
/// first tick, made with <c>vmstate rr record</c> and stopped with Ctrl-C, shared by the replay tests.
/// </summary>
public sealed class FixtureRecording : IAsyncLifetime
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("vmstate-rr-").FullName;

    public string Recording => Path.Combine(Dir, "rec");

    public string SerialPath => Path.Combine(Dir, "serial.log");

    public string Serial { get; private set; } = string.Empty;

    public ulong Instructions { get; private set; }

    public static List<string> Command(string serial)
    {
        GuestFixture f = GuestFixture.Ensure();
        return
        [
            "qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-m", "256", "-cpu", "qemu64", "-display", "none", "-vga", "std", "-no-reboot",
            "-kernel", f.Kernel, "-initrd", f.Initrd, "-append", "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check",
            "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
            "-netdev", "user,id=n1,restrict=on", "-device", "e1000,netdev=n1,mac=52:54:00:ab:cd:ef",
            "-device", "vmcoreinfo", "-serial", $"file:{serial}",
        ];
    }

    public async Task InitializeAsync()
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in (string[])[Path.Combine(AppContext.BaseDirectory, "vmstate.dll"), "rr", "record", "-o", Recording, "--", .. Command(SerialPath)])
        {
            psi.ArgumentList.Add(a);
        }

        using Process record = Process.Start(psi)!;
        try
        {
            await RecordUntilTheFirstTickAsync(record);
        }
        finally
        {
            if (!record.HasExited)
            {
                // A failed wait must not leave the recording running (its QEMU runs in a session of its own): SIGTERM
                // ends it as Ctrl-C does.
                using Process term = Process.Start("kill", ["-TERM", record.Id.ToString(CultureInfo.InvariantCulture)])!;
                await term.WaitForExitAsync();
                await record.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            }
        }

        (int code, string info, string err) = VmStateCli.Run(["rr", "info", Recording, "--json"]);
        Assert.True(code == 0, err);
        using JsonDocument doc = JsonDocument.Parse(info);
        Instructions = doc.RootElement.GetProperty("instructionCount").GetUInt64();
        Assert.Equal("Interrupted", doc.RootElement.GetProperty("end").GetString());
        Assert.Equal("7.2", string.Join('.', doc.RootElement.GetProperty("qemu").GetProperty("version").GetString()!.Split('.').Take(2)));
    }

    private async Task RecordUntilTheFirstTickAsync(Process record)
    {
        Task<string> stdout = record.StandardOutput.ReadToEndAsync();
        Task<string> stderr = record.StandardError.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        while (!(File.Exists(SerialPath) && File.ReadAllText(SerialPath).Split('\n').Any(l => l.TrimEnd('\r') == "VMSTATE-TICK 1")))
        {
            if (record.HasExited)
            {
                Assert.Fail($"rr record exited early: {await stderr}");
            }

            if (clock.Elapsed > TimeSpan.FromSeconds(180))
            {
                Assert.Fail($"the recorded guest printed no tick in 180 s: {(File.Exists(SerialPath) ? File.ReadAllText(SerialPath) : "(no console file)")}");
            }

            await Task.Delay(100);
        }

        using (Process kill = Process.Start("kill", ["-INT", record.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        await record.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(record.ExitCode == 0, await stderr);
        Assert.Contains("instructions", await stdout, StringComparison.Ordinal);
        Serial = File.ReadAllText(SerialPath);
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

public sealed class ReplayTests(FixtureRecording rec) : IClassFixture<FixtureRecording>
{
    [Fact]
    public async Task APausedReplayShowsTheRecordedProcessesAndRunsOnToTheRecordedConsoleByteForByte()
    {
        // Pause a little before the recorded end: /init printed its ground truth and started nothing since.
        GroundTruth truth = GroundTruth.Parse(rec.Serial);
        ulong target = rec.Instructions - 1_000_000;
        string work = Path.Combine(rec.Dir, "replay");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in (string[])[Path.Combine(AppContext.BaseDirectory, "vmstate.dll"), "rr", "replay", rec.Recording, "--to", target.ToString(CultureInfo.InvariantCulture), "--dir", work])
        {
            psi.ArgumentList.Add(a);
        }

        using Process replay = Process.Start(psi)!;
        Task<string> stderr = replay.StandardError.ReadToEndAsync();
        try
        {
            string? paused = await replay.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(240));
            Assert.True(paused == $"paused at instruction {target}", $"{paused}\n{(replay.HasExited ? await stderr : string.Empty)}");
            string qmpLine = (await replay.StandardOutput.ReadLineAsync())!;
            Assert.StartsWith("qmp ", qmpLine, StringComparison.Ordinal);
            string qmp = qmpLine["qmp ".Length..];

            (int code, string ps, string err) = VmStateCli.Run(["ps", "--qmp", qmp, "--json"]);
            Assert.True(code == 0, err);
            using (JsonDocument doc = JsonDocument.Parse(ps))
            {
                JsonElement list = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement : doc.RootElement.GetProperty("processes");
                var got = list.EnumerateArray().ToDictionary(p => p.GetProperty("pid").GetInt32());
                foreach (GroundTruth.Process want in truth.Processes)
                {
                    Assert.True(got.TryGetValue(want.Pid, out JsonElement p), $"pid {want.Pid} ({want.Comm}) is missing from the paused replay");
                    Assert.Equal((want.Ppid, want.Uid, want.Comm), (p.GetProperty("ppid").GetInt32(), p.GetProperty("uid").GetInt32(), p.GetProperty("comm").GetString()));
                }

                // Nothing but kernel threads (or children of init) appeared after the listing was printed.
                var printed = truth.Processes.Select(p => p.Pid).ToHashSet();
                Assert.All(got.Values.Where(p => !printed.Contains(p.GetProperty("pid").GetInt32())), p => Assert.Contains(p.GetProperty("ppid").GetInt32(), new[] { 1, 2 }));
            }

            // The replay stays paused for live commands: the count has not moved.
            await using (QmpClient client = await QmpClient.ConnectAsync(qmp))
            {
                JsonElement r = await client.ExecuteAsync("query-replay");
                Assert.Equal(target, r.GetProperty("icount").GetUInt64());
                Assert.Equal("play", r.GetProperty("mode").GetString());

                // Let it run: it replays to the recorded end and vmstate rr replay ends by itself.
                await client.ContAsync();
            }

            string rest = await replay.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(120));
            await replay.WaitForExitAsync();
            Assert.True(replay.ExitCode == 0, await stderr);
            Assert.Contains($"replay ended at instruction {rec.Instructions}", rest, StringComparison.Ordinal);
            Assert.Equal(File.ReadAllBytes(rec.SerialPath), File.ReadAllBytes(Path.Combine(work, "serial0.log")));
        }
        finally
        {
            if (!replay.HasExited)
            {
                replay.Kill(entireProcessTree: true);
            }
        }
    }

    [Fact]
    public void TheRecorderRefusesWhatReplayCannotReproduceBeforeStartingQemu()
    {
        string dir = Path.Combine(rec.Dir, "refused");
        (int code, _, string stderr) = VmStateCli.Run(["rr", "record", "-o", dir, "--", .. FixtureRecording.Command(Path.Combine(rec.Dir, "x.log")), "-smp", "2"]);
        Assert.Equal(2, code);
        Assert.Contains("cannot record -smp 2", stderr, StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir));
    }
}
