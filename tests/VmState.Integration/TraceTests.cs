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
public class TraceTests : IAsyncLifetime
{
    private const string Syscall = "__x64_sys_clock_nanosleep";
    private QemuGuest _guest = null!;

    public async Task InitializeAsync()
    {
        _guest = await QemuGuest.StartAsync(Options);
        await _guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
    }

    public async Task DisposeAsync() => await _guest.DisposeAsync();

    /// <summary>The guest: the default fixture (4-level paging, no PTI).</summary>
    protected virtual QemuGuestOptions Options => new();

    [Fact]
    public async Task TraceBreakReportsTheMarkersSystemCallsAndLeavesNothingBehind()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["trace", "--qmp", _guest.ToolQmpPath, "break", Syscall, "--max-events", "3", "--json"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("(started for this trace), TCG", stderr, StringComparison.Ordinal);

        // The stub vmstate starts listens on a UNIX socket in a private directory, removed at the end.
        string directory = PrivateDirectory(stderr);
        Assert.False(Directory.Exists(directory), $"{directory} was left behind");
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

        // The stub's socket is in a directory only this user can enter (no other local user can connect).
        string? said = await tracer.StandardError.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
        string directory = PrivateDirectory(said ?? string.Empty);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(directory));

        // SIGKILL: no cleanup in the tracer; its guard must remove the breakpoint, the stub and its directory.
        tracer.Kill(entireProcessTree: false);
        await tracer.WaitForExitAsync();
        await WaitForCleanAsync();
        await AssertCleanAndTickingAsync();
        Assert.False(Directory.Exists(directory), $"{directory} was left behind");

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

        // Loopback TCP when asked (also the fallback when QEMU cannot create the socket).
        using (GdbTraceSession session = await GdbTraceSession.StartAsync(vm.Live!, vm.Linux.Kernel, new GdbTraceOptions { UnixSocketStub = false }))
        {
            Assert.StartsWith("127.0.0.1:", session.StubEndpoint, StringComparison.Ordinal);
            session.AddBreakpoint(address, Syscall);
            Assert.Throws<InvalidDataException>(() => session.Run(_ => throw new InvalidDataException("handler failed"), duration: TimeSpan.FromSeconds(60)));
        }

        await AssertCleanAndTickingAsync();
    }

    [Fact]
    public async Task TraceWatchReportsEachChangeOfTheMarkersVariableWithOldAndNewValuesAndAWriterInTheMarker()
    {
        GroundTruth.MarkerInfo marker = _guest.Truth.Marker!;
        Dictionary<string, string> fields = MarkerFields();
        ulong watched = Hex(fields["g_watch_addr"]);
        using Process tracer = VmStateCli.StartBackground(["trace", "--qmp", _guest.ToolQmpPath, "watch", $"0x{watched:x}", "8", "--pid", marker.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "--max-events", "3", "--json"]);
        await WaitForStubAsync(tracer);
        int from = _guest.SerialLineCount;
        await RequestAsync(1);
        string output = await tracer.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(120));
        await tracer.WaitForExitAsync();
        Assert.True(tracer.ExitCode == 0, await tracer.StandardError.ReadToEndAsync());
        await _guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER watch n=3 ", StringComparison.Ordinal), TimeSpan.FromSeconds(30), from);
        string[] truth = _guest.SerialText.Split('\n').Skip(from).Where(l => l.StartsWith("VMSMARKER watch n=", StringComparison.Ordinal)).Select(l => l.TrimEnd('\r')).ToArray();
        Assert.Equal(3, truth.Length);
        (ulong textStart, ulong textEnd) = MarkerText(marker.Pid);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        for (int i = 0; i < 3; i++)
        {
            using JsonDocument hit = JsonDocument.Parse(lines[i]);
            JsonElement h = hit.RootElement;
            string[] said = truth[i].Split(' ');
            Assert.Equal(said[3], "old=" + h.GetProperty("old").GetString());
            Assert.Equal(said[4], "new=" + h.GetProperty("new").GetString());
            ulong rip = Hex(h.GetProperty("rip").GetString()!);
            Assert.InRange(rip, textStart, textEnd - 1);
            Assert.Equal(marker.Pid, h.GetProperty("pid").GetInt32());
            Assert.Equal("vmsmarker", h.GetProperty("comm").GetString());
            Assert.Equal($"0x{watched:x}", h.GetProperty("address").GetString());
        }

        await AssertCleanAndTickingAsync();
    }

    [Fact]
    public async Task FiltersAndPrintKeepTheMarkersKnownSystemCallsOnly()
    {
        GroundTruth.MarkerInfo marker = _guest.Truth.Marker!;
        using Process t2 = VmStateCli.StartBackground(["trace", "--qmp", _guest.ToolQmpPath, "break", "__x64_sys_getppid", "__x64_sys_getuid", "--comm", "vmsmarker", "--pid", marker.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "--print", "arg0,arg0:str", "--max-events", "8", "--duration", "90", "--json"]);
        await WaitForStubAsync(t2);
        int from = _guest.SerialLineCount;
        await RequestAsync(3);
        string output = await t2.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(120));
        await t2.WaitForExitAsync();
        Assert.True(t2.ExitCode == 0, await t2.StandardError.ReadToEndAsync());
        await _guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER syscalls getppid=5 getuid=3", StringComparison.Ordinal), TimeSpan.FromSeconds(30), from);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(9, lines.Length);
        var labels = new List<string>();
        foreach (string line in lines[..8])
        {
            using JsonDocument hit = JsonDocument.Parse(line);
            Assert.Equal(marker.Pid, hit.RootElement.GetProperty("pid").GetInt32());
            Assert.Equal("vmsmarker", hit.RootElement.GetProperty("comm").GetString());
            labels.Add(hit.RootElement.GetProperty("breakpoint").GetString()!);

            // At a syscall wrapper, arg0 is the struct pt_regs pointer (a kernel stack address): its bytes are printed escaped.
            Assert.True(BreakpointHit.IsKernelAddress(Hex(hit.RootElement.GetProperty("arg0").GetString()!)));
            Assert.StartsWith("\"", hit.RootElement.GetProperty("arg0:str").GetString(), StringComparison.Ordinal);
        }

        Assert.Equal([.. Enumerable.Repeat("__x64_sys_getppid", 5), .. Enumerable.Repeat("__x64_sys_getuid", 3)], labels);
        using JsonDocument summary = JsonDocument.Parse(lines[8]);
        Assert.Equal("max-events", summary.RootElement.GetProperty("reason").GetString());
        await AssertCleanAndTickingAsync();
    }

    [Fact]
    public async Task SubscribedHandlersStayStoppedSingleStepAndRunOnAsynchronously()
    {
        await using Vm vm = await Vm.AttachAsync(_guest.ToolQmpPath);
        ulong address = vm.Linux.Symbol(Syscall);
        using (GdbTraceSession session = await GdbTraceSession.StartAsync(vm.Live!, vm.Linux.Kernel))
        {
            X86GdbRegisters? stepped = null;
            int calls = 0;
            TraceBreakpoint bp = session.Subscribe(address, Syscall, async hit =>
            {
                await Task.Yield();
                calls++;
                if (calls == 1)
                {
                    return TraceAction.Stop;
                }

                stepped = session.SingleStep();
                return TraceAction.Continue;
            }, filter: new TraceHitFilter { Comm = "vmsmarker" });
            Assert.Equal(5, bp.SkipLength);

            TraceSummary first = session.Run(null, duration: TimeSpan.FromSeconds(60));
            Assert.Equal("handler", first.Reason);
            Assert.Equal("debug", await _guest.Qmp.QueryStatusAsync());
            TraceSummary second = session.Run(null, maxEvents: 2, duration: TimeSpan.FromSeconds(60));
            Assert.Equal("max-events", second.Reason);
            Assert.Equal(3, bp.Hits);
            Assert.NotNull(stepped);

            // The function starts with the 5-byte ftrace nop: one step lands right after it.
            Assert.Equal(address + 5, stepped.Rip);
        }

        await AssertCleanAndTickingAsync();
    }

    [Fact]
    public async Task ATraceAfterAGdbSessionThatAskedForMultiprocessStillResumesTheGuestAndBreaksAtAPhysicalAddress()
    {
        // gdb asks for the multiprocess extensions; QEMU 7.2 keeps them on for the rest of its life, and then
        // answers a bare D with E22 without resuming the VM.
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }

        await _guest.Qmp.HumanMonitorCommandAsync($"gdbserver tcp:127.0.0.1:{port}");
        using (var gdb = new System.Net.Sockets.TcpClient())
        {
            await gdb.ConnectAsync(System.Net.IPAddress.Loopback, port);
            System.Net.Sockets.NetworkStream stream = gdb.GetStream();
            await Packet(stream, "qSupported:multiprocess+");
            Assert.Contains("OK", await Packet(stream, "D;1"), StringComparison.Ordinal);
        }

        await _guest.Qmp.HumanMonitorCommandAsync("gdbserver none");
        Assert.Equal("running", await _guest.Qmp.QueryStatusAsync());

        // The breakpoint given by its physical address: set at the kernel-image address the code runs from.
        ulong physical;
        await using (Vm vm = await Vm.AttachAsync(_guest.ToolQmpPath))
        {
            Assert.True(vm.Linux.Kernel.AddressSpace.TryTranslate(vm.Linux.Symbol(Syscall), out physical));
        }

        (int code, string stdout, string stderr) = VmStateCli.Run(["trace", "--qmp", _guest.ToolQmpPath, "break", $"phys:0x{physical:x}", "--max-events", "2"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("vmsmarker", stdout, StringComparison.Ordinal);
        Assert.Contains(Syscall + "+0x0", stdout, StringComparison.Ordinal);
        await AssertCleanAndTickingAsync();

        // A physical page outside the kernel's text has no one virtual address to break at: refused, nothing set.
        (code, _, stderr) = VmStateCli.Run(["trace", "--qmp", _guest.ToolQmpPath, "break", "phys:0x1000", "--max-events", "1"]);
        Assert.Equal(1, code);
        Assert.Contains("physical address 0x1000 is not in the kernel's text", stderr, StringComparison.Ordinal);
        await AssertCleanAndTickingAsync();
    }

    /// <summary>Sends one packet and returns what came back within half a second.</summary>
    private static async Task<string> Packet(System.Net.Sockets.NetworkStream stream, string payload)
    {
        int sum = payload.Sum(c => c) & 0xff;
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes($"${payload}#{sum:x2}"));
        await Task.Delay(500);
        var buffer = new byte[65536];
        int n = stream.DataAvailable ? await stream.ReadAsync(buffer) : 0;
        return System.Text.Encoding.ASCII.GetString(buffer, 0, n);
    }

    private Dictionary<string, string> MarkerFields()
    {
        string line = _guest.SerialText.Split('\n').First(l => l.StartsWith("VMSTATE-TRUTH marker ", StringComparison.Ordinal)).TrimEnd('\r');
        return line["VMSTATE-TRUTH marker ".Length..].Split(' ').Select(kv => kv.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv[1]);
    }

    /// <summary>The marker's executable mapping (start, end) from the ground-truth maps lines.</summary>
    private (ulong Start, ulong End) MarkerText(int pid)
    {
        string prefix = $"VMSTATE-TRUTH maps pid={pid} ";
        string line = _guest.SerialText.Split('\n').Select(l => l.TrimEnd('\r')).First(l => l.StartsWith(prefix, StringComparison.Ordinal) && l.Contains(" r-xp ", StringComparison.Ordinal) && l.EndsWith("/bin/vmsmarker", StringComparison.Ordinal));
        string[] range = line[prefix.Length..].Split(' ')[0].Split('-');
        return (Hex(range[0]), Hex(range[1]));
    }

    private static ulong Hex(string text) => ulong.Parse(text.StartsWith("0x", StringComparison.Ordinal) ? text[2..] : text, System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Writes a request into the marker's g_request (guest-physical, through QEMU's memory); it serves it after its next tick.</summary>
    private async Task RequestAsync(ulong request)
    {
        ulong paddr = Hex(MarkerFields()["g_request_paddr"]);
        Assert.NotEqual(0UL, paddr);
        await using LiveMachine live = await LiveMachine.AttachAsync(_guest.Qmp, ownsClient: false);
        Assert.Equal(8, live.Memory.Write(paddr, BitConverter.GetBytes(request)));
    }

    /// <summary>Waits until the tracer's stub is up and its breakpoints are in (its stderr says so).</summary>
    private static async Task WaitForStubAsync(Process tracer)
    {
        string? line = await tracer.StandardError.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
        Assert.NotNull(line);
        Assert.Contains("through the gdbstub", line, StringComparison.Ordinal);
    }


    /// <summary>The private directory of the UNIX-socket stub named in the tracer's first stderr line.</summary>
    private static string PrivateDirectory(string stderr)
    {
        const string At = "through the gdbstub at unix:";
        int start = stderr.IndexOf(At, StringComparison.Ordinal);
        Assert.True(start >= 0, $"not a UNIX-socket stub: {stderr}");
        string path = stderr[(start + At.Length)..].Split(' ')[0];
        string directory = Path.GetDirectoryName(path)!;
        Assert.StartsWith(GdbTraceSession.PrivateDirectoryPrefix, Path.GetFileName(directory), StringComparison.Ordinal);
        return directory;
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

/// <summary>The same traces on the 5-level paging guest with page-table isolation (user CR3s have bit 12 set).</summary>
public sealed class TraceTests5LevelPti : TraceTests
{
    protected override QemuGuestOptions Options => new() { CpuModel = "max", ExtraKernelArgs = "pti=on" };
}
