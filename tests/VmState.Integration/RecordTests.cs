using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Live;

namespace VmState.Integration;

/// <summary>
/// <c>vmstate record</c> on a running fixture guest: captures streamed from QEMU into a history store, each of its own
/// moment (the kernel's jiffies grow from capture to capture), each readable as <c>STORE@N</c>; the store verifies, and
/// the guest keeps running with no migration left active, also after Ctrl-C in the middle of a recording.
/// </summary>
public sealed class RecordTests(FrontDoorGuest fixture) : IClassFixture<FrontDoorGuest>, IDisposable
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
}
