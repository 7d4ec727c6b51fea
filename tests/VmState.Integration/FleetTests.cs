using System.Globalization;
using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Live;

namespace VmState.Integration;

/// <summary>
/// A consistent cut across four running fixture VMs (<c>vmstate fleet snapshot</c>): a manifest with the cut's skew
/// and each VM's pause, every snapshot opens and its processes are its own guest's, and every VM runs on afterwards.
/// </summary>
public sealed class FleetTests : IAsyncLifetime
{
    private readonly List<QemuGuest> _guests = [];

    public async Task InitializeAsync()
    {
        QemuGuest[] started = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => QemuGuest.StartAsync(new QemuGuestOptions
        {
            MemoryMiB = 160,
            Cpus = 1,
            VirtioMac = $"52:54:00:f1:00:{i:x2}",
            E1000Mac = $"52:54:00:f2:00:{i:x2}",
        })));
        _guests.AddRange(started);
        await Task.WhenAll(_guests.Select(g => g.WaitForReadyAsync(TimeSpan.FromSeconds(300))));
    }

    public async Task DisposeAsync()
    {
        foreach (QemuGuest g in _guests)
        {
            await g.DisposeAsync();
        }
    }

    [Fact]
    public async Task ALiveCutOfFourVmsHasASkewEverySnapshotIsItsOwnGuestAndAllRunOn()
    {
        string dir = Path.Combine(_guests[0].WorkDir, $"cut-{Guid.NewGuid():N}");
        var args = new List<string> { "fleet", "snapshot", "-o", dir, "--live", "--json" };
        foreach (QemuGuest g in _guests)
        {
            args.AddRange(["--qmp", g.ToolQmpPath]);
        }

        int[] ticks = _guests.Select(LastTick).ToArray();
        (int code, string stdout, string stderr) = VmStateCli.Run(args);
        Assert.True(code == 0, stderr + stdout);
        using JsonDocument manifest = JsonDocument.Parse(stdout);
        Assert.Equal("vmstate-fleet/1", manifest.RootElement.GetProperty("format").GetString());
        double skew = manifest.RootElement.GetProperty("skewMs").GetDouble();
        Assert.InRange(skew, 0, 2000);
        Assert.Equal(skew, manifest.RootElement.GetProperty("skewCorrectedMs").GetDouble());

        // The clock-offset method (a STOP timestamp against its stop's round trip) checked where the truth is known:
        // this host's QEMUs share its clock, so the estimate is within its uncertainty of 0.
        JsonElement host = manifest.RootElement.GetProperty("hosts").EnumerateArray().Single();
        Assert.Equal("localhost", host.GetProperty("host").GetString());
        double offset = host.GetProperty("measuredOffsetMs").GetDouble();
        double uncertainty = host.GetProperty("measuredUncertaintyMs").GetDouble();
        Assert.True(uncertainty > 0 && Math.Abs(offset) <= uncertainty + 0.002, $"offset {offset} ms, uncertainty {uncertainty} ms");
        JsonElement[] vms = manifest.RootElement.GetProperty("vms").EnumerateArray().ToArray();
        Assert.Equal(4, vms.Length);
        for (int i = 0; i < 4; i++)
        {
            JsonElement vm = vms[i];
            Assert.Equal(JsonValueKind.Null, vm.GetProperty("error").ValueKind);
            Assert.Equal("background-snapshot", vm.GetProperty("mode").GetString());
            Assert.True(vm.GetProperty("pauseMs").GetDouble() > 0, vm.ToString());
            string file = Path.Combine(dir, vm.GetProperty("file").GetString()!);
            Assert.Equal(new FileInfo(file).Length, vm.GetProperty("bytes").GetInt64());
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));

            // The snapshot is of this VM: its e1000 MAC and its marker are this guest's.
            (code, stdout, stderr) = VmStateCli.Run(["netdev", file, "--json"]);
            Assert.True(code == 0, stderr);
            Assert.Contains($"52:54:00:f2:00:{i:x2}", stdout, StringComparison.Ordinal);
            (code, stdout, stderr) = VmStateCli.Run(["ps", file, "--json"]);
            Assert.True(code == 0, stderr);
            using JsonDocument ps = JsonDocument.Parse(stdout);
            var pids = ps.RootElement.GetProperty("processes").EnumerateArray().Select(p => p.GetProperty("pid").GetInt32()).ToHashSet();
            Assert.All(_guests[i].Truth.Processes, p => Assert.Contains(p.Pid, pids));
        }

        Assert.True(File.Exists(Path.Combine(dir, "fleet.json")));
        await AllRunOnAsync(ticks);
    }

    [Fact]
    public async Task APausedCutWhereOneVmsFileCannotBeWrittenCostsOnlyThatSnapshot()
    {
        string dir = Path.Combine(_guests[0].WorkDir, $"cut-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var args = new List<string> { "fleet", "snapshot", "-o", dir, "--json" };
        foreach (QemuGuest g in _guests)
        {
            args.AddRange(["--qmp", g.ToolQmpPath]);
        }

        // The second VM's snapshot would replace a directory: refused for that VM alone.
        string blocked = Path.Combine(dir, $"{Path.GetFileName(_guests[1].WorkDir)}-qmp-tool.mig");
        Directory.CreateDirectory(blocked);
        int[] ticks = _guests.Select(LastTick).ToArray();
        (int code, string stdout, string stderr) = VmStateCli.Run(args);
        Assert.True(code == 1, $"exit {code}: {stderr}{stdout}");
        using JsonDocument manifest = JsonDocument.Parse(stdout);
        JsonElement[] vms = manifest.RootElement.GetProperty("vms").EnumerateArray().ToArray();
        Assert.NotEqual(JsonValueKind.Null, vms[1].GetProperty("error").ValueKind);
        Assert.Equal(JsonValueKind.Null, vms[1].GetProperty("file").ValueKind);
        foreach (int i in new[] { 0, 2, 3 })
        {
            Assert.Equal("pause", vms[i].GetProperty("mode").GetString());
            Assert.Equal(JsonValueKind.Null, vms[i].GetProperty("error").ValueKind);
            Assert.True(File.Exists(Path.Combine(dir, vms[i].GetProperty("file").GetString()!)));
        }

        await AllRunOnAsync(ticks);
    }

    private async Task AllRunOnAsync(int[] ticksBefore)
    {
        for (int i = 0; i < _guests.Count; i++)
        {
            await using QmpClient q = await QmpClient.ConnectAsync(_guests[i].ToolQmpPath);
            Assert.Equal("running", await q.QueryStatusAsync());
            int before = ticksBefore[i];
            await _guests[i].WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal) && int.Parse(l["VMSMARKER tick=".Length..].Split(' ')[0], CultureInfo.InvariantCulture) > before, TimeSpan.FromSeconds(60));
        }
    }

    private static int LastTick(QemuGuest g) => g.SerialText.Split('\n')
        .Where(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal))
        .Select(l => int.TryParse(l["VMSMARKER tick=".Length..].Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : 0)
        .DefaultIfEmpty(0).Max();
}
