using System.Diagnostics;
using System.Text.Json;
using VmState.Events;
using VmState.Integration.Harness;
using VmState.Live;

namespace VmState.Integration;

/// <summary>
/// Breakpoints on the running guest through QEMU's gdbstub (vmstate trace, GdbTraceSession). The marker process
/// calls clock_nanosleep once a second (glibc's nanosleep), and nothing else in the fixture does after READY, so
/// every hit of __x64_sys_clock_nanosleep must be the marker's. After every trace, however it ended, the guest
/// must run on with no breakpoint and no stub left (QEMU keeps breakpoints when a gdb client just disconnects).
/// </summary>
public sealed class TraceTests : IAsyncLifetime
{
    private const string Syscall = "__x64_sys_clock_nanosleep";
    private QemuGuest _guest = null!;

    public async Task InitializeAsync()
    {
        _guest = await QemuGuest.StartAsync(new QemuGuestOptions());
        await _guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
    }

    public async Task DisposeAsync() => await _guest.DisposeAsync();

    [Fact]
    public async Task TraceBreakReportsTheMarkersSystemCallsAndLeavesNothingBehind()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["trace", "--qmp", _guest.ToolQmpPath, "break", Syscall, "--max-events", "3", "--json"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("(started for this trace), TCG", stderr, StringComparison.Ordinal);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        GroundTruth.MarkerInfo marker = _guest.Truth.Marker!;
        foreach (string line in lines[..3])
        {
            using JsonDocument hit = JsonDocument.Parse(line);
            Assert.Equal(marker.Pid, hit.RootElement.GetProperty("pid").GetInt32());
            Assert.Equal("vmsmarker", hit.RootElement.GetProperty("comm").GetString());
            Assert.Equal(Syscall + "+0x0", hit.RootElement.GetProperty("symbol").GetString());
        }

        using JsonDocument summary = JsonDocument.Parse(lines[3]);
        Assert.Equal(3, summary.RootElement.GetProperty("hits").GetInt64());
        Assert.Equal("max-events", summary.RootElement.GetProperty("reason").GetString());
        await AssertCleanAndTickingAsync();
    }

    [Fact]
    public async Task AStubTheUserOpenedBeyondLoopbackIsUsedThroughLoopbackWithAWarningAndLeftAsItWas()
    {
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }

        // The user's own stub on every interface (what `-gdb tcp::PORT` gives); vmstate starts none of its own.
        await _guest.Qmp.HumanMonitorCommandAsync($"gdbserver tcp:0.0.0.0:{port}");
        try
        {
            (int code, _, string stderr) = VmStateCli.Run(["trace", "--qmp", _guest.ToolQmpPath, "break", Syscall, "--max-events", "1", "--json"]);
            Assert.True(code == 0, stderr);
            Assert.Contains($"gdbstub listens on 0.0.0.0 port {port}, not only on loopback", stderr, StringComparison.Ordinal);
            Assert.Contains($"through the gdbstub at 127.0.0.1:{port}", stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("started for this trace", stderr, StringComparison.Ordinal);
            Assert.True(await HasGdbStubAsync(), "the user's stub was removed");
        }
        finally
        {
            await _guest.Qmp.HumanMonitorCommandAsync("gdbserver none");
        }

        await AssertCleanAndTickingAsync();
    }

    [Fact]
    public async Task ATraceKilledWithSigkillLeavesTheGuestRunningAndASecondTraceWorks()
    {
        using Process tracer = StartTracer();
        string? first = await tracer.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
        Assert.NotNull(first);
        Assert.Contains("\"comm\":\"vmsmarker\"", first, StringComparison.Ordinal);

        // SIGKILL: no cleanup in the tracer; its guard must remove the breakpoint and the stub.
        tracer.Kill(entireProcessTree: false);
        await tracer.WaitForExitAsync();
        await WaitForCleanAsync();
        await AssertCleanAndTickingAsync();

        (int code, string stdout, string stderr) = VmStateCli.Run(["trace", "--qmp", _guest.ToolQmpPath, "break", Syscall, "--max-events", "1"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("vmsmarker", stdout, StringComparison.Ordinal);
        await AssertCleanAndTickingAsync();
    }

    [Fact]
    public async Task ATraceStoppedWithSigintRemovesItsBreakpoint()
    {
        using Process tracer = StartTracer();
        string? first = await tracer.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
        Assert.NotNull(first);
        using (Process kill = Process.Start("kill", ["-INT", tracer.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        string rest = await tracer.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(60));
        await tracer.WaitForExitAsync();
        Assert.Contains("\"reason\":\"cancelled\"", rest, StringComparison.Ordinal);
        await AssertCleanAndTickingAsync();
    }

    [Fact]
    public async Task TheLibrarySessionGivesRegistersAndTaskRemovesOnRequestAndCleansUpAfterAHandlerException()
    {
        await using Vm vm = await Vm.AttachAsync(_guest.ToolQmpPath);
        ulong address = vm.Linux.Symbol(Syscall);
        await using LiveMachine second = await LiveMachine.AttachAsync(_guest.Qmp, ownsClient: false);

        using (GdbTraceSession session = await GdbTraceSession.StartAsync(vm.Live!, vm.Linux.Kernel))
        {
            Assert.True(session.StartedStub);
            Assert.False(session.IsKvm);
            TraceBreakpoint bp = session.AddBreakpoint(address, Syscall);

            // The stub serves one client: a second session (over the harness's own QMP socket) is told so.
            GdbStubBusyException busy = await Assert.ThrowsAsync<GdbStubBusyException>(() => GdbTraceSession.StartAsync(second, vm.Linux.Kernel));
            Assert.Contains(session.StubEndpoint, busy.Message, StringComparison.Ordinal);

            BreakpointHit? seen = null;
            TraceSummary summary = session.Run(hit => { seen = hit; return TraceAction.Remove; }, duration: TimeSpan.FromSeconds(60));
            Assert.Equal("no breakpoints left", summary.Reason);
            Assert.Equal(1, bp.Hits);
            Assert.False(bp.Active);
            Assert.NotNull(seen);
            Assert.Equal(address, seen.Registers.Rip);
            Assert.True(seen.Registers.IsKernelMode);
            Assert.NotEqual(0UL, seen.Registers.Cr3);
            Assert.Equal(_guest.Truth.Marker!.Pid, seen.Pid);
            Assert.Equal("vmsmarker", seen.Comm);
        }

        await AssertCleanAndTickingAsync();

        using (GdbTraceSession session = await GdbTraceSession.StartAsync(vm.Live!, vm.Linux.Kernel))
        {
            session.AddBreakpoint(address, Syscall);
            Assert.Throws<InvalidDataException>(() => session.Run(_ => throw new InvalidDataException("handler failed"), duration: TimeSpan.FromSeconds(60)));
        }

        await AssertCleanAndTickingAsync();
    }

    private Process StartTracer()
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vmstate.dll"));
        foreach (string a in (string[])["trace", "--qmp", _guest.ToolQmpPath, "break", Syscall, "--json"])
        {
            psi.ArgumentList.Add(a);
        }

        return Process.Start(psi)!;
    }

    /// <summary>Waits (up to 30 s) until QEMU has no gdbstub and runs.</summary>
    private async Task WaitForCleanAsync()
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(30) && (await HasGdbStubAsync() || await _guest.Qmp.QueryStatusAsync() != "running"))
        {
            await Task.Delay(200);
        }
    }

    private async Task<bool> HasGdbStubAsync()
    {
        JsonElement chardevs = await _guest.Qmp.ExecuteAsync("query-chardev");
        return chardevs.EnumerateArray().Any(c => c.GetProperty("label").GetString() == "gdb");
    }

    /// <summary>No stub left, the VM runs, and the marker prints two more ticks (a breakpoint left behind would stop it at its next nanosleep).</summary>
    private async Task AssertCleanAndTickingAsync()
    {
        Assert.False(await HasGdbStubAsync());
        Assert.Equal("running", await _guest.Qmp.QueryStatusAsync());
        int from = _guest.SerialLineCount;
        await _guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal), TimeSpan.FromSeconds(60), from);
        from = _guest.SerialLineCount;
        await _guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal), TimeSpan.FromSeconds(60), from);
        Assert.Equal("running", await _guest.Qmp.QueryStatusAsync());
    }
}
