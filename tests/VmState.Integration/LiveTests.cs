using System.Buffers.Binary;
using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Live;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>Introspection of the running guest through QMP and QEMU's process memory.</summary>
public sealed class LiveTests : IAsyncLifetime
{
    private QemuGuest _guest = null!;

    public async Task InitializeAsync()
    {
        _guest = await QemuGuest.StartAsync(new QemuGuestOptions());
        await _guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
    }

    public async Task DisposeAsync() => await _guest.DisposeAsync();

    private async Task AssertRunningAsync() => Assert.Equal("running", await _guest.Qmp.QueryStatusAsync());

    [Fact]
    public async Task LiveReadsSeeTheMarkerAndLiveWritesReachTheGuest()
    {
        await using LiveMachine live = await LiveMachine.AttachAsync(_guest.ToolQmpPath);
        GroundTruth.MarkerInfo marker = _guest.Truth.Marker!;
        byte[] b = new byte[marker.Value.Length];
        Assert.Equal(b.Length, live.Memory.Read(marker.PhysicalAddress, b));
        Assert.Equal(marker.Value, System.Text.Encoding.ASCII.GetString(b));

        byte[] value = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(value, 0x2468ace013579bdf);
        Assert.Equal(8, live.Memory.Write(marker.GValuePhysicalAddress, value));
        await _guest.WaitForSerialLineAsync(l => l.EndsWith("value=0x2468ace013579bdf", StringComparison.Ordinal), TimeSpan.FromSeconds(30), _guest.SerialLineCount);
        await AssertRunningAsync();
    }

    [Fact]
    public async Task LiveStateWhilePausedEqualsASnapshotOfTheSameMoment()
    {
        await using LiveMachine live = await LiveMachine.AttachAsync(_guest.ToolQmpPath);
        string file = Path.Combine(_guest.WorkDir, "paused.mig");
        await using (await live.PauseAsync())
        {
            using MachineState view = await live.ToMachineStateAsync();
            await _guest.Qmp.MigrateToFileAsync(file);
            using MachineState snap = SnapshotLoader.Open(file);
            Assert.Equal(snap.Cpus.Count, view.Cpus.Count);
            for (int i = 0; i < snap.Cpus.Count; i++)
            {
                Assert.Equal(snap.Cpus[i].Rip, view.Cpus[i].Rip);
                Assert.Equal(snap.Cpus[i].Cr3, view.Cpus[i].Cr3);
                Assert.Equal(snap.Cpus[i].Regs, view.Cpus[i].Regs);
            }

            byte[] a = new byte[1 << 20];
            byte[] c = new byte[1 << 20];
            foreach (ulong at in new ulong[] { 0x100000, 0x1000000, 0x8000000, 0x1ff00000 })
            {
                view.Memory.ReadExactly(at, a);
                snap.Memory.ReadExactly(at, c);
                Assert.True(a.AsSpan().SequenceEqual(c), $"live and snapshot RAM differ at 0x{at:x}");
            }
        }

        // migrate leaves the source in postmigrate; the pause handle's cont runs it again.
        await AssertRunningAsync();
    }

    [Fact]
    public async Task CliCommandsWorkLiveAndLeaveTheGuestRunning()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["info", "--qmp", _guest.ToolQmpPath, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal(2, doc.RootElement.GetProperty("cpus").GetArrayLength());
        }

        await AssertRunningAsync();
        string outDir = Path.Combine(_guest.WorkDir, "live-extract");
        (code, _, stderr) = VmStateCli.Run(["extract", "--qmp", _guest.ToolQmpPath, "-o", outDir]);
        Assert.True(code == 0, stderr);
        await AssertRunningAsync();
        using MachineState core = SnapshotLoader.Open(Path.Combine(outDir, "core.elf"));
        byte[] b = new byte[15];
        core.Memory.ReadExactly(_guest.Truth.Marker!.PhysicalAddress, b);
        Assert.Equal("VMSTATE-MARKER-", System.Text.Encoding.ASCII.GetString(b));

        (code, stdout, stderr) = VmStateCli.Run(["read", "--qmp", _guest.ToolQmpPath, "--pa", $"0x{_guest.Truth.Marker.PhysicalAddress:x}", "15", "-f", "raw"]);
        Assert.True(code == 0, stderr);
        Assert.Equal("VMSTATE-MARKER-", stdout);
        await AssertRunningAsync();
    }

    [Fact]
    public async Task OneCallGivesAConsistentStateOfTheRunningVm()
    {
        await using LiveMachine live = await LiveMachine.AttachAsync(_guest.ToolQmpPath);
        using MachineState m = await live.SnapshotAsync(Path.Combine(_guest.WorkDir, "vm-snapshot.mig"));
        Assert.Equal(2, m.Cpus.Count);
        Assert.Equal(_guest.Truth.Nics.Single(n => n.Driver == "e1000").Mac, m.Devices.Single(d => d.IdStr.EndsWith("/e1000", StringComparison.Ordinal)).Decoded["mac"]);
        byte[] b = new byte[15];
        m.Memory.ReadExactly(_guest.Truth.Marker!.PhysicalAddress, b);
        Assert.Equal("VMSTATE-MARKER-", System.Text.Encoding.ASCII.GetString(b));
        await AssertRunningAsync();
    }

    [Fact]
    public async Task CtrlCWhileTheGuestIsPausedResumesIt()
    {
        // A paused read whose output nobody drains blocks on the pipe: the guest stays paused until SIGINT.
        string dll = Path.Combine(AppContext.BaseDirectory, "vmstate.dll");
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { dll, "read", "--qmp", _guest.ToolQmpPath, "--pause", "--pa", "0x100000", "64m", "-f", "raw" })
        {
            psi.ArgumentList.Add(a);
        }

        using var p = System.Diagnostics.Process.Start(psi)!;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (await _guest.Qmp.QueryStatusAsync() == "running")
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "vmstate never paused the guest");
            await Task.Delay(20);
        }

        Assert.Equal(0, Kill(p.Id, 2));
        Assert.True(p.WaitForExit(30_000), "vmstate did not exit on SIGINT");
        string err = p.StandardError.ReadToEnd();
        Assert.True(await _guest.Qmp.QueryStatusAsync() == "running", $"exit {p.ExitCode}: {err}");
    }

    [Fact]
    public async Task AnErrorWhileTheGuestIsPausedResumesIt()
    {
        (int code, _, string stderr) = VmStateCli.Run(["read", "--qmp", _guest.ToolQmpPath, "--pause", "--pa", "0xa0000", "16"]);
        Assert.Equal(3, code);
        Assert.Contains("not backed", stderr, StringComparison.Ordinal);
        await AssertRunningAsync();
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);

    [Fact]
    public async Task PsWorksLiveAndLeavesTheGuestRunning()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["ps", "--qmp", _guest.ToolQmpPath, "--pause", "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        JsonElement list = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement : doc.RootElement.GetProperty("processes");
        var pids = list.EnumerateArray().Select(p => p.GetProperty("pid").GetInt32()).ToHashSet();
        Assert.All(_guest.Truth.Processes, p => Assert.Contains(p.Pid, pids));

        // A command whose argument trails the (left out) snapshot: the type's name is not taken for a snapshot file.
        (code, stdout, stderr) = VmStateCli.Run(["types", "--qmp", _guest.ToolQmpPath, "task_struct"]);
        Assert.True(code == 0, stderr);
        Assert.StartsWith("struct task_struct {", stdout, StringComparison.Ordinal);
        Assert.Matches(@"\bcomm\[16\];", stdout);
        await AssertRunningAsync();
    }

    [Fact]
    public async Task DmesgMapsAndProcdumpWorkLiveAndLeaveTheGuestRunning()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["dmesg", "--qmp", _guest.ToolQmpPath, "--pause"]);
        Assert.True(code == 0, stderr);
        Assert.Contains(_guest.Truth.DmesgMarker!, stdout, StringComparison.Ordinal);

        string pid = _guest.Truth.Marker!.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture);
        (code, stdout, stderr) = VmStateCli.Run(["maps", "--qmp", _guest.ToolQmpPath, "--pause", pid]);
        Assert.True(code == 0, stderr);
        string prefix = $"pid={pid} ";
        Assert.Equal(
            _guest.Truth.Lines.Where(l => l.Key == "maps" && l.Text.StartsWith(prefix, StringComparison.Ordinal)).Select(l => l.Text[prefix.Length..].TrimEnd()),
            stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd()));

        string core = Path.Combine(Path.GetTempPath(), $"vmstate-live-{Guid.NewGuid():N}.core");
        try
        {
            (code, _, stderr) = VmStateCli.Run(["procdump", "--qmp", _guest.ToolQmpPath, "--pause", pid, "-o", core]);
            Assert.True(code == 0, stderr);
            (int gdb, string output) = GdbBatch.Run(string.Empty, $"file {GuestFixture.Ensure().Values["MARKER_BIN"]}", $"core-file {core}", "bt");
            Assert.True(gdb == 0, output);
            Assert.Contains(" in main (", output, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(core);
        }

        await AssertRunningAsync();
    }

    [Fact]
    public async Task DmesgFollowPrintsNewRecordsAsTheGuestLogsThem()
    {
        // /init writes "VMSTATE-KTICK n" to /dev/kmsg every second; following for 4 s must show new ticks arrive.
        (int code, string stdout, string stderr) = VmStateCli.Run(["dmesg", "--qmp", _guest.ToolQmpPath, "--follow", "--duration", "4", "--interval", "200", "--tail", "1"]);
        Assert.True(code == 0, stderr);
        var ticks = System.Text.RegularExpressions.Regex.Matches(stdout, @"\] VMSTATE-KTICK (\d+)\n").Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(ticks.Count >= 2, $"expected new ticks while following, got: {stdout}");
        Assert.Equal(Enumerable.Range(ticks[0], ticks.Count), ticks); // each once, in order, none lost
        await AssertRunningAsync();

        (code, _, stderr) = VmStateCli.Run(["dmesg", "--qmp", _guest.ToolQmpPath, "--follow", "--pause"]);
        Assert.Equal(1, code);
        Assert.Contains("--follow needs --qmp", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WatchPsRefreshesTheLiveView()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["watch", "-n", "0.5", "--count", "2", "ps", "--qmp", _guest.ToolQmpPath]);
        Assert.True(code == 0, stderr);
        string beta = _guest.Truth.Processes.Single(p => p.Uid == 1000).Comm;
        Assert.Equal(2, stdout.Split('\n').Count(l => l.StartsWith("every 0.5 s: vmstate ps", StringComparison.Ordinal)));
        Assert.Equal(2, stdout.Split('\n').Count(l => l.Contains(beta, StringComparison.Ordinal)));
        await AssertRunningAsync();
    }

    [Fact]
    public void TheQmpPathReadsTheSameBytes()
    {
        string pa = $"0x{_guest.Truth.Marker!.PhysicalAddress:x}";
        var qmpOnly = new Dictionary<string, string> { ["VMSTATE_LIVE_PATH"] = "qmp" };
        (int code, string stdout, string stderr) = VmStateCli.Run(["read", "--qmp", _guest.ToolQmpPath, "--pa", pa, "15", "-f", "raw"], qmpOnly);
        Assert.True(code == 0, stderr);
        Assert.Equal("VMSTATE-MARKER-", stdout);
        (code, stdout, stderr) = VmStateCli.Run(["info", "--qmp", _guest.ToolQmpPath], qmpOnly);
        Assert.True(code == 0, stderr);
        Assert.Contains("QMP pmemsave", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void DoctorExplainsHowToEnableSharedMemory()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["doctor", "--qmp", _guest.ToolQmpPath]);
        Assert.True(code == 0, stderr);
        Assert.Contains("no   shared memory", stdout, StringComparison.Ordinal);
        Assert.Contains("memory-backend-file", stdout, StringComparison.Ordinal);
        Assert.Contains("ok   process memory", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task KillingQemuDuringReadsGivesACleanError()
    {
        LiveMachine live = await LiveMachine.AttachAsync(_guest.ToolQmpPath);
        try
        {
            byte[] b = new byte[4096];
            Assert.Equal(4096, live.Memory.Read(0x100000, b));
            System.Diagnostics.Process.GetProcessById(live.Memory.ProcessId).Kill();
            await Task.Delay(500);
            var e = Assert.Throws<LiveVmGoneException>(() => live.Memory.Read(0x100000, b));
            Assert.Contains("is gone", e.Message, StringComparison.Ordinal);
            Assert.Equal(live.Memory.ProcessId, e.ProcessId);
            LiveVmGoneException qmp = await Assert.ThrowsAsync<LiveVmGoneException>(() => live.ReadCpusAsync());
            Assert.Equal((_guest.ToolQmpPath, "human-monitor-command"), (qmp.SocketPath, qmp.Command));
        }
        finally
        {
            await live.DisposeAsync();
        }
    }
}
