using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using VmState.Arch.X86;
using VmState.Integration.Harness;
using VmState.Live;

namespace VmState.Integration;

/// <summary>One fixture guest shared by the typed-event traces of a <see cref="TraceEventTests{TGuest}"/> class.</summary>
public class TraceEventGuest : IAsyncLifetime
{
    public QemuGuest Guest { get; private set; } = null!;

    /// <summary>The default fixture: Linux 6.1, 4-level paging, no PTI.</summary>
    protected virtual QemuGuestOptions Options => new() { MemoryMiB = 256 };

    public async Task InitializeAsync()
    {
        Guest = await QemuGuest.StartAsync(Options);
        await Guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
    }

    public async Task DisposeAsync() => await Guest.DisposeAsync();
}

/// <summary>Linux 6.12 with 5-level paging and page-table isolation (user CR3s have bit 12 set).</summary>
public sealed class TraceEventGuest612La57Pti : TraceEventGuest
{
    protected override QemuGuestOptions Options => new() { MemoryMiB = 256, KernelSeries = "6.12", CpuModel = "max", ExtraKernelArgs = "pti=on" };
}

/// <summary>
/// vmstate trace exec and trace syscalls against the marker's ground truth: on request it runs three known programs
/// and prints each one's pid and argv, or makes getppid five times and getuid three times. Nothing else in the
/// fixture forks after READY, so the programs it reports are the only execs.
/// </summary>
public abstract class TraceEventTests<TGuest>(TGuest fixture) : IClassFixture<TGuest>
    where TGuest : TraceEventGuest
{
    private QemuGuest Guest => fixture.Guest;

    [Fact]
    public async Task TraceExecReportsExactlyTheProgramsTheGuestRanWithPidParentUserAndArguments()
    {
        GroundTruth.MarkerInfo marker = Guest.Truth.Marker!;
        ulong request = await RequestAddressAsync();
        using Process tracer = VmStateCli.StartBackground(["trace", "--qmp", Guest.ToolQmpPath, "exec", "--max-events", "3", "--duration", "120", "--json"]);
        await WaitForStubAsync(tracer);
        int from = Guest.SerialLineCount;
        await RequestAsync(request, 2);
        string output = await tracer.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(150));
        await tracer.WaitForExitAsync();
        Assert.True(tracer.ExitCode == 0, await tracer.StandardError.ReadToEndAsync());
        await Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER exec pid=", StringComparison.Ordinal) && l.Contains("/bin/sleep", StringComparison.Ordinal), TimeSpan.FromSeconds(30), from);
        string[] truth = Guest.SerialText.Split('\n').Skip(from).Select(l => l.TrimEnd('\r')).Where(l => l.StartsWith("VMSMARKER exec pid=", StringComparison.Ordinal)).ToArray();
        Assert.Equal(3, truth.Length);

        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        for (int i = 0; i < 3; i++)
        {
            // VMSMARKER exec pid=<pid> argv=<argv joined by spaces>
            string said = truth[i]["VMSMARKER exec ".Length..];
            int pid = int.Parse(said["pid=".Length..said.IndexOf(' ', StringComparison.Ordinal)], CultureInfo.InvariantCulture);
            string argv = said[(said.IndexOf(" argv=", StringComparison.Ordinal) + " argv=".Length)..];
            using JsonDocument doc = JsonDocument.Parse(lines[i]);
            JsonElement e = doc.RootElement;
            Assert.Equal(pid, e.GetProperty("pid").GetInt32());
            Assert.Equal(argv, string.Join(' ', e.GetProperty("argv").EnumerateArray().Select(a => a.GetString())));
            string program = argv.Split(' ')[0];
            Assert.Equal(program, e.GetProperty("filename").GetString());
            Assert.Equal(program[(program.LastIndexOf('/') + 1)..], e.GetProperty("comm").GetString());
            Assert.Equal(marker.Pid, e.GetProperty("ppid").GetInt32());
            Assert.Equal(0, e.GetProperty("uid").GetInt32());
            Assert.False(e.GetProperty("truncated").GetBoolean());
        }

        using JsonDocument summary = JsonDocument.Parse(lines[3]);
        Assert.Equal("max-events", summary.RootElement.GetProperty("reason").GetString());
        await AssertCleanAndTickingAsync();
    }

    [Fact]
    public async Task TraceSyscallsCountsTheMarkersKnownCallsByNameAndEndsCleanlyOnCtrlC()
    {
        ulong request = await RequestAddressAsync();
        using Process tracer = VmStateCli.StartBackground(["trace", "--qmp", Guest.ToolQmpPath, "syscalls", "--comm", "vmsmarker", "--count", "--json"]);
        await WaitForStubAsync(tracer);
        int from = Guest.SerialLineCount;
        await RequestAsync(request, 3);
        await Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER syscalls getppid=5 getuid=3", StringComparison.Ordinal), TimeSpan.FromSeconds(120), from);
        using (Process kill = Process.Start("kill", ["-INT", tracer.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        string output = await tracer.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(60));
        await tracer.WaitForExitAsync();
        Assert.True(tracer.ExitCode == 0, await tracer.StandardError.ReadToEndAsync());
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        JsonElement summary = Assert.Single(lines.Select(l => JsonDocument.Parse(l).RootElement));
        Assert.Equal("cancelled", summary.GetProperty("reason").GetString());
        Dictionary<string, (long Nr, long Calls)> counts = summary.GetProperty("syscalls").EnumerateArray()
            .Where(s => s.GetProperty("name").ValueKind == JsonValueKind.String)
            .ToDictionary(s => s.GetProperty("name").GetString()!, s => (s.GetProperty("nr").GetInt64(), s.GetProperty("calls").GetInt64()));

        // The numbers of arch/x86/entry/syscalls/syscall_64.tbl; the marker calls nothing else of these between requests.
        // Exact: a single step over do_syscall_64 that a pending stop of the other vCPU cut short once made a call
        // count twice (GdbTraceSession checks that the step moved RIP).
        Assert.Equal((110, 5), counts["getppid"]);
        Assert.Equal((102, 3), counts["getuid"]);
        Assert.True(counts["write"].Calls >= 1);
        Assert.Equal(1, counts["write"].Nr);
        Assert.Equal(summary.GetProperty("hits").GetInt64(), summary.GetProperty("syscalls").EnumerateArray().Sum(s => s.GetProperty("calls").GetInt64()));
        await AssertCleanAndTickingAsync();
    }

    [Fact]
    public async Task TraceSyscallsShowsEachCallOfOneProcessWithItsArguments()
    {
        GroundTruth.MarkerInfo marker = Guest.Truth.Marker!;
        ulong request = await RequestAddressAsync();
        string pid = marker.Pid.ToString(CultureInfo.InvariantCulture);
        using Process tracer = VmStateCli.StartBackground(["trace", "--qmp", Guest.ToolQmpPath, "syscalls", "--pid", pid, "--duration", "120", "--json"]);
        await WaitForStubAsync(tracer);
        int from = Guest.SerialLineCount;
        await RequestAsync(request, 3);
        var calls = new List<JsonElement>();
        // Up to the marker's next sleep after the request: getppid x5, getuid x3, its line (write), clock_nanosleep.
        while (calls.Count(c => c.GetProperty("name").GetString() == "getuid") < 3 || calls[^1].GetProperty("name").GetString() != "clock_nanosleep")
        {
            string? line = await tracer.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
            Assert.NotNull(line);
            calls.Add(JsonDocument.Parse(line).RootElement);
        }

        using (Process kill = Process.Start("kill", ["-INT", tracer.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        _ = await tracer.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(60));
        await tracer.WaitForExitAsync();
        Assert.True(tracer.ExitCode == 0, await tracer.StandardError.ReadToEndAsync());
        Assert.All(calls, c => Assert.Equal(marker.Pid, c.GetProperty("pid").GetInt32()));
        Assert.All(calls, c => Assert.Equal(6, c.GetProperty("args").GetArrayLength()));

        // getppid five times, then getuid three times, back to back (raw syscall(2), no libc caching).
        string[] names = calls.Select(c => c.GetProperty("name").GetString()!).ToArray();
        int first = Array.IndexOf(names, "getppid");
        Assert.Equal([.. Enumerable.Repeat("getppid", 5), .. Enumerable.Repeat("getuid", 3), "write", "clock_nanosleep"], names[first..]);
        Assert.All(calls[first..(first + 8)], c => Assert.Equal(c.GetProperty("name").GetString() == "getppid" ? 110 : 102, c.GetProperty("nr").GetInt32()));

        // clock_nanosleep(CLOCK_REALTIME, 0, &ts, &ts): glibc's nanosleep, its first two arguments known.
        JsonElement sleep = calls[^1];
        Assert.Equal(["0x0", "0x0"], sleep.GetProperty("args").EnumerateArray().Take(2).Select(a => a.GetString()));
        await Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER syscalls getppid=5 getuid=3", StringComparison.Ordinal), TimeSpan.FromSeconds(60), from);
        await AssertCleanAndTickingAsync();
    }

    /// <summary>
    /// The guest-physical address of the marker's g_request now (a fork by an exec request copies the page on the
    /// marker's next write, so the address the marker printed at start can be stale).
    /// </summary>
    private async Task<ulong> RequestAddressAsync()
    {
        string line = Guest.SerialText.Split('\n').First(l => l.StartsWith("VMSTATE-TRUTH marker ", StringComparison.Ordinal)).TrimEnd('\r');
        string field = line.Split(' ').First(f => f.StartsWith("g_request_addr=", StringComparison.Ordinal));
        ulong virtualAddress = ulong.Parse(field["g_request_addr=0x".Length..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        await using Vm vm = await Vm.AttachAsync(Guest.ToolQmpPath);
        AddressSpace space = vm.Linux.ProcessAddressSpace(Guest.Truth.Marker!.Pid);
        Assert.True(space.TryTranslate(virtualAddress, out ulong physical), "g_request is not mapped in the marker");
        return physical;
    }

    /// <summary>Writes a request into the marker's g_request (guest-physical, through QEMU's memory); it serves it after its next tick.</summary>
    private async Task RequestAsync(ulong physical, ulong request)
    {
        await using LiveMachine live = await LiveMachine.AttachAsync(Guest.Qmp, ownsClient: false);
        Assert.Equal(8, live.Memory.Write(physical, BitConverter.GetBytes(request)));
    }

    /// <summary>Waits until the tracer's breakpoint is in (its stderr says so).</summary>
    private static async Task WaitForStubAsync(Process tracer)
    {
        string? line = await tracer.StandardError.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
        Assert.NotNull(line);
        Assert.Contains("through the gdbstub", line, StringComparison.Ordinal);
        Assert.Contains("TCG", line, StringComparison.Ordinal);
    }


    /// <summary>No stub left, the VM runs, and the marker prints two more ticks (a breakpoint left behind would stop the guest).</summary>
    private async Task AssertCleanAndTickingAsync()
    {
        JsonElement chardevs = await Guest.Qmp.ExecuteAsync("query-chardev");
        Assert.DoesNotContain(chardevs.EnumerateArray(), c => c.GetProperty("label").GetString() == "gdb");
        Assert.Equal("running", await Guest.Qmp.QueryStatusAsync());
        for (int i = 0; i < 2; i++)
        {
            int from = Guest.SerialLineCount;
            await Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal), TimeSpan.FromSeconds(60), from);
        }

        Assert.Equal("running", await Guest.Qmp.QueryStatusAsync());
    }
}

/// <summary>The typed-event traces on the default fixture (Linux 6.1, 4-level paging).</summary>
public sealed class TraceEventTests61(TraceEventGuest fixture) : TraceEventTests<TraceEventGuest>(fixture);

/// <summary>The typed-event traces on Linux 6.12 with 5-level paging and PTI.</summary>
public sealed class TraceEventTests612La57Pti(TraceEventGuest612La57Pti fixture) : TraceEventTests<TraceEventGuest612La57Pti>(fixture);
