using VmState.Integration.Harness;

namespace VmState.Integration;

/// <summary>The gdbstub live path: used when QEMU has a gdbstub and process memory cannot be read.</summary>
public sealed class GdbstubPathTests : IAsyncLifetime
{
    private readonly int _port = 20000 + Random.Shared.Next(10000);
    private QemuGuest _guest = null!;

    public async Task InitializeAsync()
    {
        _guest = await QemuGuest.StartAsync(new QemuGuestOptions { GdbPort = _port });
        await _guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
    }

    public async Task DisposeAsync() => await _guest.DisposeAsync();

    [Fact]
    public async Task ReadsThroughQemusGdbstubGiveTheSameBytesAndLeaveTheGuestRunning()
    {
        var env = new Dictionary<string, string> { ["VMSTATE_LIVE_PATH"] = "gdbstub" };
        string pa = $"0x{_guest.Truth.Marker!.PhysicalAddress:x}";
        (int code, string stdout, string stderr) = VmStateCli.Run(["read", "--qmp", _guest.ToolQmpPath, "--pa", pa, "15", "-f", "raw"], env);
        Assert.True(code == 0, stderr);
        Assert.Equal("VMSTATE-MARKER-", stdout);
        (code, stdout, stderr) = VmStateCli.Run(["info", "--qmp", _guest.ToolQmpPath], env);
        Assert.True(code == 0, stderr);
        Assert.Contains($"QEMU gdbstub 127.0.0.1:{_port}", stdout, StringComparison.Ordinal);

        (code, stdout, stderr) = VmStateCli.Run(["doctor", "--qmp", _guest.ToolQmpPath]);
        Assert.True(code == 0, stderr);
        Assert.Contains("ok   gdbstub", stdout, StringComparison.Ordinal);

        // QEMU stops the guest when a gdb client connects or sends a packet; vmstate must resume it.
        Assert.Equal("running", await VmState.Live.QemuMonitor.QueryStatusAsync(_guest.Qmp));
        int from = _guest.SerialLineCount;
        await _guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), from);
    }
}
