using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using VmState.Linux;
using VmState.Live;

namespace VmState.Events;

/// <summary>
/// Breakpoints on a running VM through stock QEMU's gdbstub. The session owns the stub connection: it starts a stub
/// over QMP when QEMU has none (HMP <c>gdbserver tcp:127.0.0.1:PORT</c>, stopped again at the end), sets software
/// (<c>Z0</c>) or hardware (<c>Z1</c>) breakpoints, and on each hit (stop reply <c>T05thread:N;</c>, the whole VM
/// stopped) reads that vCPU's registers (<c>Hg</c>, <c>g</c>) and the task running on it (the Linux layer on live
/// memory), asks the handler, steps the vCPU over the breakpoint and continues. Disposing removes every breakpoint
/// and resumes the VM (<c>D</c>), whatever ended the trace; a <see cref="TraceGuard"/> does the same if this process
/// is killed. QEMU 7.2 facts used here: gdbstub.c (<c>gdb_vm_state_change</c>, <c>handle_detach</c>,
/// <c>gdb_continue_partial</c>), accel/tcg/cpu-exec.c <c>check_for_breakpoints</c> (a single-stepping vCPU ignores
/// breakpoints, so under TCG the step over needs no <c>z0</c>/<c>Z0</c>); under KVM a software breakpoint is an int3
/// byte in guest memory and is taken out for the step.
/// </summary>
public sealed class GdbTraceSession : IDisposable
{
    private readonly QmpClient _qmp;
    private readonly LinuxKernel _kernel;
    private readonly GdbRemoteChannel _channel;
    private readonly TimeSpan _timeout;
    private readonly List<TraceBreakpoint> _breakpoints = [];
    private readonly bool _wasRunning;
    private TraceGuard? _guard;
    private bool _running;
    private bool _disposed;

    private GdbTraceSession(QmpClient qmp, LinuxKernel kernel, GdbRemoteChannel channel, TimeSpan timeout, bool startedStub, bool isKvm, bool wasRunning)
    {
        _qmp = qmp;
        _kernel = kernel;
        _channel = channel;
        _timeout = timeout;
        StartedStub = startedStub;
        IsKvm = isKvm;
        _wasRunning = wasRunning;
    }

    /// <summary>host:port of the stub.</summary>
    public string StubEndpoint => _channel.Endpoint;

    /// <summary>True when the session started the stub (and stops it when disposed).</summary>
    public bool StartedStub { get; }

    /// <summary>
    /// A warning when the stub the session found (not one it started, which listens on loopback only) listens beyond
    /// loopback, else null.
    /// </summary>
    public string? StubWarning { get; private set; }

    /// <summary>True when QEMU runs the guest under KVM (query-kvm), false under TCG.</summary>
    public bool IsKvm { get; }

    /// <summary>The breakpoints set so far.</summary>
    public IReadOnlyList<TraceBreakpoint> Breakpoints => _breakpoints;

    /// <summary>
    /// Connects to QEMU's gdbstub (starting one if QEMU has none) for tracing. The VM is stopped from here until
    /// <see cref="Run"/> resumes it (QEMU stops it when a gdb client connects).
    /// </summary>
    /// <param name="live">The running QEMU.</param>
    /// <param name="kernel">The guest kernel (symbols at hits, current task), read through <paramref name="live"/>'s memory.</param>
    /// <param name="options">Stub and guard; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <exception cref="GdbStubBusyException">Another client holds the stub.</exception>
    /// <exception cref="QmpException">QEMU refused to start a stub.</exception>
    public static async Task<GdbTraceSession> StartAsync(LiveMachine live, LinuxKernel kernel, GdbTraceOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(live);
        ArgumentNullException.ThrowIfNull(kernel);
        options ??= new GdbTraceOptions();
        QmpClient qmp = live.Qmp;
        JsonElement kvm = await qmp.ExecuteAsync("query-kvm", cancellationToken: cancellationToken).ConfigureAwait(false);
        bool isKvm = kvm.TryGetProperty("enabled", out JsonElement en) && en.GetBoolean();
        bool wasRunning = await qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false) == "running";

        (string Host, int Port)? stub = options.Stub;
        string? warning = null;
        if (stub is null && await FindStubAsync(qmp, cancellationToken).ConfigureAwait(false) is GdbStubChardev existing)
        {
            if (existing.ListensBeyondLoopback)
            {
                string listen = existing.Listen.Length == 0 ? "every interface" : existing.Listen;
                warning = $"QEMU's gdbstub listens on {listen} port {existing.Port}, not only on loopback: it has no authentication, so anyone who reaches it can read and change the VM (start it with HMP \"gdbserver tcp:127.0.0.1:PORT\", or let vmstate start one)";
            }

            // Starting another one would replace it (gdbserver_start closes the old chardev) and cut its client off.
            if (existing.InUse)
            {
                throw new GdbStubBusyException($"{existing.Endpoint} (client {existing.Peer})");
            }

            stub = (existing.Host, existing.Port);
        }

        bool started = false;
        if (stub is null)
        {
            int port = FreeLoopbackPort();
            string said = await qmp.HumanMonitorCommandAsync($"gdbserver tcp:127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}", cancellationToken: cancellationToken).ConfigureAwait(false);
            if (!said.Contains("Waiting for gdb connection", StringComparison.Ordinal))
            {
                throw new IOException($"QEMU did not start a gdbstub on 127.0.0.1:{port}: {said.Trim()}");
            }

            stub = ("127.0.0.1", port);
            started = true;
        }

        GdbRemoteChannel? channel = null;
        try
        {
            channel = GdbRemoteChannel.Connect(stub.Value.Host, stub.Value.Port, options.ReplyTimeout);
            try
            {
                // A stub that is serving another client leaves our connection in its listen backlog, unanswered.
                channel.Request("qSupported:multiprocess-", options.ReplyTimeout);
            }
            catch (IOException)
            {
                throw new GdbStubBusyException(channel.Endpoint);
            }

            var session = new GdbTraceSession(qmp, kernel, channel, options.ReplyTimeout, started, isKvm, wasRunning) { StubWarning = warning };
            if (options.GuardCommand is { } guard)
            {
                try
                {
                    session._guard = TraceGuard.Start(guard, qmp.SocketPath, stub.Value.Host, stub.Value.Port, started);
                }
                catch
                {
                    session.Dispose();
                    throw;
                }
            }

            return session;
        }
        catch
        {
            channel?.Dispose();
            if (started)
            {
                await qmp.HumanMonitorCommandAsync("gdbserver none", cancellationToken: CancellationToken.None).ConfigureAwait(false);
            }

            if (wasRunning && await qmp.QueryStatusAsync(CancellationToken.None).ConfigureAwait(false) != "running")
            {
                await qmp.ContAsync(CancellationToken.None).ConfigureAwait(false);
            }

            throw;
        }
    }

    /// <summary>
    /// Sets a breakpoint at the kernel-virtual <paramref name="address"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">QEMU refused it (a fifth hardware breakpoint under KVM gives E22).</exception>
    public TraceBreakpoint AddBreakpoint(ulong address, string label, bool hardware = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        string reply = _channel.Request($"Z{(hardware ? 1 : 0)},{address:x},1", _timeout);
        if (reply != "OK")
        {
            string why = reply.Length == 0 ? "not supported by this QEMU" : reply;
            throw new InvalidOperationException($"QEMU did not set a {(hardware ? "hardware" : "software")} breakpoint at {label} (0x{address:x}): {why}");
        }

        var bp = new TraceBreakpoint(address, label, hardware);
        _breakpoints.Add(bp);
        return bp;
    }

    /// <summary>
    /// Resumes the VM and handles hits until the handler says <see cref="TraceAction.Stop"/>, no breakpoint is left,
    /// <paramref name="maxEvents"/> hits were handled, <paramref name="duration"/> passed, or
    /// <paramref name="cancellationToken"/> is cancelled. The VM is stopped on return (dispose the session to
    /// remove the breakpoints and resume it); an exception from the handler propagates the same way.
    /// </summary>
    public TraceSummary Run(Func<BreakpointHit, TraceAction> handler, long? maxEvents = null, TimeSpan? duration = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var clock = Stopwatch.StartNew();
        long hits = 0;
        string reason;
        _channel.Send("c");
        _running = true;
        while (true)
        {
            if (maxEvents is long max && hits >= max)
            {
                reason = "max-events";
                break;
            }

            TimeSpan left = duration is TimeSpan d ? d - clock.Elapsed : Timeout.InfiniteTimeSpan;
            if (duration is not null && left <= TimeSpan.Zero)
            {
                reason = "duration";
                break;
            }

            if (cancellationToken.IsCancellationRequested)
            {
                reason = "cancelled";
                break;
            }

            string? packet = _channel.Receive(left, cancellationToken);
            if (packet is null || !GdbStopReply.TryParse(packet, out GdbStopReply stop) || !stop.IsTrap || stop.Thread is not int thread)
            {
                // A timeout, a stray packet, or a pause by someone else over QMP (T02): their resume lets the VM run on.
                continue;
            }

            _running = false;
            DateTimeOffset time = DateTimeOffset.UtcNow;
            X86GdbRegisters regs = ReadRegisters(thread);
            TraceBreakpoint? bp = _breakpoints.Find(b => b.Active && b.Address == regs.Rip);
            if (bp is null)
            {
                // Not ours (the guest's own int3 is re-injected by QEMU; nothing else traps here): run on.
                _channel.Send("c");
                _running = true;
                continue;
            }

            bp.Hits++;
            hits++;
            BreakpointHit hit = Describe(hits, time, bp, thread - 1, regs);
            TraceAction action = handler(hit);
            if (action == TraceAction.Stop)
            {
                reason = "handler";
                break;
            }

            if (action == TraceAction.Remove)
            {
                Expect($"z{(bp.Hardware ? 1 : 0)},{bp.Address:x},1", "OK");
                bp.Active = false;
                if (!_breakpoints.Exists(b => b.Active))
                {
                    reason = "no breakpoints left";
                    break;
                }
            }
            else
            {
                StepOver(bp, thread);
            }

            _channel.Send("c");
            _running = true;
        }

        StopIfRunning();
        return new TraceSummary(hits, clock.Elapsed, reason, _breakpoints);
    }

    /// <summary>Runs <see cref="Run"/> on a thread-pool thread.</summary>
    public Task<TraceSummary> RunAsync(Func<BreakpointHit, TraceAction> handler, long? maxEvents = null, TimeSpan? duration = null, CancellationToken cancellationToken = default) =>
        Task.Run(() => Run(handler, maxEvents, duration, cancellationToken), CancellationToken.None);

    /// <summary>
    /// Removes every breakpoint and resumes the VM (gdb <c>D</c>), closes the connection, stops the stub if the
    /// session started it, pauses the VM again if it was paused before the session, and releases the guard.
    /// </summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        try
        {
            try
            {
                StopIfRunning();
                _channel.Request("D", _timeout);
            }
            finally
            {
                _channel.Dispose();
            }

            if (StartedStub)
            {
                _qmp.HumanMonitorCommandAsync("gdbserver none").GetAwaiter().GetResult();
            }

            if (!_wasRunning)
            {
                _qmp.StopAsync().GetAwaiter().GetResult();
            }

            _guard?.Release();
        }
        finally
        {
            // If the detach failed, the guard was told nothing, and recovers the VM once its input closes here.
            _guard?.Dispose();
        }
    }

    /// <summary>QEMU's gdbstub, if it has one (query-chardev, label <c>gdb</c>).</summary>
    /// <exception cref="NotSupportedException">The stub listens on something other than TCP (a UNIX socket).</exception>
    private static async Task<GdbStubChardev?> FindStubAsync(QmpClient qmp, CancellationToken cancellationToken)
    {
        JsonElement chardevs = await qmp.ExecuteAsync("query-chardev", cancellationToken: cancellationToken).ConfigureAwait(false);
        foreach (JsonElement c in chardevs.EnumerateArray())
        {
            if (c.TryGetProperty("label", out JsonElement label) && label.GetString() == GdbStubChardev.Label
                && c.TryGetProperty("filename", out JsonElement file) && file.GetString() is string filename)
            {
                return GdbStubChardev.TryParse(filename, out GdbStubChardev? stub)
                    ? stub
                    : throw new NotSupportedException($"QEMU's gdbstub listens on \"{filename}\"; tracing connects to TCP stubs only (restart it with HMP gdbserver tcp:127.0.0.1:PORT, or let vmstate start one)");
            }
        }

        return null;
    }

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private X86GdbRegisters ReadRegisters(int thread)
    {
        Expect($"Hg{thread:x}", "OK");
        string g = _channel.Request("g", _timeout);
        return X86GdbRegisters.TryParse(g, out X86GdbRegisters? regs)
            ? regs!
            : throw new IOException($"the gdbstub at {StubEndpoint} sent an unreadable register block for thread {thread}: \"{(g.Length > 40 ? g[..40] + "…" : g)}\"");
    }

    private BreakpointHit Describe(long sequence, DateTimeOffset time, TraceBreakpoint bp, int vcpu, X86GdbRegisters regs)
    {
        int? pid = null;
        string? comm = null, problem = null;
        try
        {
            KernelObject task = _kernel.CurrentTask(vcpu);
            pid = (int)task.Member("pid").ToInt64();
            comm = task.Member("comm").ReadString();
        }
        catch (Exception e) when (e is KernelDataException or VmStateException or IOException)
        {
            problem = e.Message;
        }

        return new BreakpointHit
        {
            Sequence = sequence,
            Time = time,
            Breakpoint = bp,
            Vcpu = vcpu,
            Registers = regs,
            Symbol = _kernel.Symbols.TrySymbolize(regs.Rip, out KernelSymbol s, out ulong off) ? $"{s.Name}+0x{off:x}" : null,
            Pid = pid,
            Comm = comm,
            TaskProblem = problem,
        };
    }

    private void StepOver(TraceBreakpoint bp, int thread)
    {
        // TCG: a single-stepping vCPU ignores breakpoints (check_for_breakpoints). KVM: the int3 byte is in guest
        // memory, so it comes out for the step. vCont with one thread resumes only that vCPU (gdb_continue_partial).
        bool takeOut = IsKvm && !bp.Hardware;
        if (takeOut)
        {
            Expect($"z0,{bp.Address:x},1", "OK");
        }

        _channel.Send($"vCont;s:{thread:x}");
        while (true)
        {
            string packet = _channel.Receive(_timeout, CancellationToken.None)
                ?? throw new IOException($"the gdbstub at {StubEndpoint} did not report the single step of thread {thread}");
            if (GdbStopReply.TryParse(packet, out _))
            {
                break;
            }
        }

        if (takeOut)
        {
            Expect($"Z0,{bp.Address:x},1", "OK");
        }
    }

    private void StopIfRunning()
    {
        if (!_running)
        {
            return;
        }

        // Any byte stops a running VM; the stop reply follows (T02, or T05 if a hit won the race).
        _channel.Interrupt();
        while (true)
        {
            string packet = _channel.Receive(_timeout, CancellationToken.None)
                ?? throw new IOException($"the gdbstub at {StubEndpoint} did not stop the VM");
            if (GdbStopReply.TryParse(packet, out _))
            {
                break;
            }
        }

        _running = false;
    }

    private void Expect(string request, string expected)
    {
        string reply = _channel.Request(request, _timeout);
        if (reply != expected)
        {
            throw new IOException($"the gdbstub at {StubEndpoint} answered \"{request}\" with \"{reply}\"");
        }
    }
}
