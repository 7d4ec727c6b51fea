using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Live;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>vmstate snapshot against a running guest: the file is usable and the guest keeps running, on every path.</summary>
public sealed class SnapshotCommandTests : IAsyncLifetime
{
    private QemuGuest _guest = null!;
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-snap-").FullName;

    public async Task InitializeAsync()
    {
        _guest = await QemuGuest.StartAsync(new QemuGuestOptions());
        await _guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
    }

    public async Task DisposeAsync()
    {
        await _guest.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task AssertGuestStillTicksAsync()
    {
        Assert.Equal("running", await _guest.Qmp.QueryStatusAsync());
        int from = _guest.SerialLineCount;
        await _guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), from);
    }

    [Fact]
    public async Task SnapshotToFileResumesTheGuestAndTheFileHoldsItsState()
    {
        string file = Path.Combine(_dir, "live.mig");
        (int code, string stdout, string stderr) = VmStateCli.Run(["snapshot", "--qmp", _guest.ToolQmpPath, "-o", file, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal("running", doc.RootElement.GetProperty("statusAfter").GetString());
            Assert.True(doc.RootElement.GetProperty("bytes").GetInt64() > 1 << 20);
        }

        await AssertGuestStillTicksAsync();
        using MachineState m = SnapshotLoader.Open(file);
        Assert.Equal(2, m.Cpus.Count);
        GroundTruth.MarkerInfo marker = _guest.Truth.Marker!;
        byte[] b = new byte[marker.Value.Length];
        m.Memory.Read(marker.PhysicalAddress, b);
        Assert.Equal(marker.Value, System.Text.Encoding.ASCII.GetString(b));
        Assert.Empty(Directory.GetFiles(_dir, ".*.tmp"));
    }

    [Fact]
    public async Task ALiveSnapshotKeepsTheGuestRunningAndResumesWhereItStarted()
    {
        string file = Path.Combine(_dir, "background.mig");
        await _guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), _guest.SerialLineCount);
        int before = EditResumeTests.LastTick(_guest.SerialText);
        (int code, string stdout, string stderr) = VmStateCli.Run(["snapshot", "--qmp", _guest.ToolQmpPath, "-o", file, "--live", "--json"]);
        Assert.True(code == 0, stderr);
        int after = EditResumeTests.LastTick(_guest.SerialText);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal("background-snapshot", doc.RootElement.GetProperty("mode").GetString());
            Assert.InRange(doc.RootElement.GetProperty("qemuDowntimeMs").GetDouble(), 0, 1000);
        }

        await AssertGuestStillTicksAsync();
        await using QemuGuest resumed = await QemuGuest.StartAsync(new QemuGuestOptions { Incoming = file });
        string first = await resumed.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        int tick = int.Parse(first["VMSTATE-TICK ".Length..], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(tick, before + 1, after + 1);
    }

    [Fact]
    public async Task AFailedSaveStillResumesTheGuestAndLeavesNoFile()
    {
        string file = Path.Combine(_dir, "no-such-dir", "x.mig");
        (int code, _, string stderr) = VmStateCli.Run(["snapshot", "--qmp", _guest.ToolQmpPath, "-o", file]);
        Assert.NotEqual(0, code);
        Assert.Contains("vmstate:", stderr, StringComparison.Ordinal);
        await AssertGuestStillTicksAsync();
        Assert.False(File.Exists(file));
    }

    [Fact]
    public async Task QmpErrorsAreTypedAndTheConnectionStaysUsable()
    {
        var e = await Assert.ThrowsAsync<QmpException>(() => _guest.Qmp.ExecuteAsync("no-such-command"));
        Assert.Equal("CommandNotFound", e.ErrorClass);
        Assert.Equal("running", await _guest.Qmp.QueryStatusAsync());
    }

    [Fact]
    public async Task SavevmWithoutADiskFailsCleanlyAndTheGuestRuns()
    {
        (int code, _, string stderr) = VmStateCli.Run(["snapshot", "--qmp", _guest.ToolQmpPath, "--savevm", "nodisk"]);
        Assert.NotEqual(0, code);
        Assert.Contains("savevm", stderr, StringComparison.Ordinal);
        await AssertGuestStillTicksAsync();
    }
}
