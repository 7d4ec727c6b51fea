using System.Buffers.Binary;
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
/// over QMP when QEMU has none (HMP <c>gdbserver unix:PATH,server=on,wait=off</c> in a private directory, else
/// <c>gdbserver tcp:127.0.0.1:PORT</c>; stopped again at the end), sets software
/// (<c>Z0</c>) or hardware (<c>Z1</c>) breakpoints, and on each hit (stop reply <c>T05thread:N;</c>, the whole VM
/// stopped) reads that vCPU's registers (<c>g</c>) and the task running on it (the Linux layer on live
/// memory), asks the handler, steps the vCPU over the breakpoint and continues: a breakpoint on a no-op instruction
/// (an ftrace site, <c>endbr64</c>) costs <c>g</c> and <c>cADDR</c> (continue past the no-op), any other one
/// <c>g</c>, a single step (<c>vCont;s</c>, its stop reply, <c>p</c> of RIP to check it ran) and <c>c</c>. Disposing removes every breakpoint
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
    private const int KvmDebugRegisters = 4;
    private const int RipRegister = 16;
    private const int MaxStepAttempts = 16;
    private readonly bool _wasRunning;
    private CurrentTaskReader? _tasks;
    private (int Thread, ulong Rip)? _atHit;
    private bool _stepped;
    private TraceGuard? _guard;
    private bool _running;
    private bool _disposed;
    private string? _privateDirectory;

    /// <summary>The name prefix of the private directory (in the temporary directory) of a stub on a UNIX socket.</summary>
    public const string PrivateDirectoryPrefix = "vmstate-gdb-";

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

    /// <summary>The stub: host:port, or <c>unix:PATH</c>.</summary>
    public string StubEndpoint => _channel.Endpoint;

    /// <summary>True when the session started the stub (and stops it when disposed).</summary>
    public bool StartedStub { get; }

    /// <summary>
    /// A warning when the stub the session found (not one it started, which listens on loopback only) listens beyond
    /// loopback, else null.
    /// </summary>
    public string? StubWarning { get; private set; }

    /// <summary>The guest kernel the session reads hits through (symbols, current task, memory).</summary>
    public LinuxKernel Kernel => _kernel;

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
        bool isKvm = IsKvmEnabled(await qmp.ExecuteAsync("query-kvm", cancellationToken: cancellationToken).ConfigureAwait(false));
        bool wasRunning = await qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false) == "running";

        string? stub = options.Stub is (string h, int p) ? $"{h}:{p.ToString(CultureInfo.InvariantCulture)}" : null;
        string? warning = null;
        if (stub is null && await FindStubAsync(qmp, cancellationToken).ConfigureAwait(false) is GdbStubChardev existing)
        {
            warning = existing.ExposureWarning;

            // Starting another one would replace it (gdbserver_start closes the old chardev) and cut its client off.
            if (existing.InUse)
            {
                throw new GdbStubBusyException(existing.SocketPath is null ? $"{existing.Endpoint} (client {existing.Peer})" : existing.Endpoint);
            }

            stub = existing.Endpoint;
        }

        bool started = false;
        string? privateDirectory = null;
        if (stub is null && options.UnixSocketStub)
        {
            (stub, privateDirectory) = await StartUnixStubAsync(qmp, cancellationToken).ConfigureAwait(false);
            started = stub is not null;
        }

        if (stub is null)
        {
            int port = FreeLoopbackPort();
            string said = await qmp.HumanMonitorCommandAsync($"gdbserver tcp:127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}", cancellationToken: cancellationToken).ConfigureAwait(false);
            if (!said.Contains("Waiting for gdb connection", StringComparison.Ordinal))
            {
                throw new IOException($"QEMU did not start a gdbstub on 127.0.0.1:{port}: {said.Trim()}");
            }

            stub = $"127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}";
            started = true;
        }

        GdbRemoteChannel? channel = null;
        try
        {
            channel = GdbRemoteChannel.Connect(stub, options.ReplyTimeout);
            try
            {
                // A stub that is serving another client leaves our connection in its listen backlog, unanswered.
                channel.Request("qSupported:multiprocess-;xmlRegisters=i386", options.ReplyTimeout);
            }
            catch (IOException)
            {
                throw new GdbStubBusyException(channel.Endpoint);
            }

            // Reading target.xml makes QEMU answer single-register reads and writes (p/P; handle_get_reg and
            // handle_set_reg answer "" until gdb_has_xml), which check that a single step moved RIP.
            channel.Request("qXfer:features:read:target.xml:0,ffb", options.ReplyTimeout);
            var session = new GdbTraceSession(qmp, kernel, channel, options.ReplyTimeout, started, isKvm, wasRunning) { StubWarning = warning, _privateDirectory = privateDirectory };
            if (options.GuardCommand is { } guard)
            {
                try
                {
                    session._guard = TraceGuard.Start(guard, qmp, stub, started);
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
                if (privateDirectory is not null)
                {
                    RemovePrivateDirectory(privateDirectory);
                }
            }

            if (wasRunning && await qmp.QueryStatusAsync(CancellationToken.None).ConfigureAwait(false) != "running")
            {
                await qmp.ContAsync(CancellationToken.None).ConfigureAwait(false);
            }

            throw;
        }
    }

    /// <summary>
    /// Only hits that match reach a handler (see <see cref="TraceHitFilter"/>); applies to every breakpoint and watchpoint
    /// together with its own filter. Null: no session-wide filter.
    /// </summary>
    public TraceHitFilter? Filter { get; set; }

    /// <summary>
    /// Sets a breakpoint at the kernel-virtual <paramref name="address"/> whose hits go to the handler given to
    /// <see cref="Run(Func{BreakpointHit, TraceAction}?, long?, TimeSpan?, CancellationToken)"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">QEMU refused it, or a fifth hardware breakpoint or watchpoint under KVM.</exception>
    public TraceBreakpoint AddBreakpoint(ulong address, string label, bool hardware = false) => AddBreakpointCore(address, label, hardware, null, null);

    /// <summary>Sets a breakpoint whose hits go to <paramref name="handler"/> (after <paramref name="filter"/>).</summary>
    /// <exception cref="InvalidOperationException">QEMU refused it, or a fifth hardware breakpoint or watchpoint under KVM.</exception>
    public TraceBreakpoint Subscribe(ulong address, string label, Func<BreakpointHit, TraceAction> handler, bool hardware = false, TraceHitFilter? filter = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return AddBreakpointCore(address, label, hardware, filter, h => ValueTask.FromResult(handler(h)));
    }

    /// <summary>Sets a breakpoint whose hits go to the asynchronous <paramref name="handler"/> (the VM stays stopped until it completes).</summary>
    /// <exception cref="InvalidOperationException">QEMU refused it, or a fifth hardware breakpoint or watchpoint under KVM.</exception>
    public TraceBreakpoint Subscribe(ulong address, string label, Func<BreakpointHit, ValueTask<TraceAction>> handler, bool hardware = false, TraceHitFilter? filter = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return AddBreakpointCore(address, label, hardware, filter, handler);
    }

    /// <summary>
    /// Sets a watchpoint (gdb <c>Z2</c>/<c>Z3</c>/<c>Z4</c>) on <paramref name="length"/> bytes at the virtual
    /// <paramref name="address"/>. QEMU matches watchpoints on virtual addresses in whatever address space a vCPU is
    /// in, so a user-space address fires in every process that touches it: give a <paramref name="filter"/> (pid or
    /// CR3) to keep one process's accesses. <paramref name="reader"/> reads the watched bytes for the old and new
    /// values (a process's address space for a user address; null: the kernel's page tables).
    /// </summary>
    /// <exception cref="InvalidOperationException">QEMU refused it, or a fifth hardware breakpoint or watchpoint under KVM.</exception>
    public TraceBreakpoint AddWatchpoint(ulong address, int length, TraceEventKind kind, string label, Func<ulong, Memory<byte>, int>? reader = null, TraceHitFilter? filter = null, Func<BreakpointHit, ValueTask<TraceAction>>? handler = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (kind == TraceEventKind.Breakpoint)
        {
            throw new ArgumentOutOfRangeException(nameof(kind), "a watchpoint watches writes, reads or both");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(length, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, 8);
        var bp = new TraceBreakpoint(address, label, true) { Kind = kind, Length = length, Filter = filter, Handler = handler, Reader = reader ?? ((a, m) => _kernel.Read(a, m.Span)) };
        Insert(bp);
        bp.LastValue = ReadWatched(bp);
        _breakpoints.Add(bp);
        return bp;
    }

    /// <summary>
    /// Single-steps the vCPU of the hit being handled (call it from a handler, or after a handler said
    /// <see cref="TraceAction.Stop"/>), the rest of the VM staying stopped, and returns its registers after the step.
    /// The session then does not step over the breakpoint itself.
    /// </summary>
    /// <exception cref="InvalidOperationException">No hit is being handled.</exception>
    public X86GdbRegisters SingleStep()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_atHit is not (int thread, ulong rip))
        {
            throw new InvalidOperationException("single-step needs a stopped vCPU: call it from a handler");
        }

        TraceBreakpoint? under = _breakpoints.Find(b => b.Active && b.Kind == TraceEventKind.Breakpoint && b.Address == rip);
        StepVcpu(under, thread, rip);
        X86GdbRegisters regs = ReadRegisters(thread);
        _atHit = (thread, regs.Rip);
        _stepped = true;
        return regs;
    }

    /// <summary>
    /// Resumes the VM and handles hits until a handler says <see cref="TraceAction.Stop"/>, no breakpoint is left,
    /// <paramref name="maxEvents"/> hits were handled, <paramref name="duration"/> passed, or
    /// <paramref name="cancellationToken"/> is cancelled. Hits of breakpoints subscribed with their own handler go to
    /// it, the others to <paramref name="handler"/> (null: continue). The VM is stopped on return (dispose the session
    /// to remove the breakpoints and resume it, or run again); an exception from a handler propagates the same way.
    /// </summary>
    public TraceSummary Run(Func<BreakpointHit, TraceAction>? handler, long? maxEvents = null, TimeSpan? duration = null, CancellationToken cancellationToken = default) =>
        RunCore(handler is null ? null : h => ValueTask.FromResult(handler(h)), maxEvents, duration, cancellationToken);

    /// <summary>Runs <see cref="Run"/> on a thread-pool thread.</summary>
    public Task<TraceSummary> RunAsync(Func<BreakpointHit, TraceAction>? handler, long? maxEvents = null, TimeSpan? duration = null, CancellationToken cancellationToken = default) =>
        Task.Run(() => Run(handler, maxEvents, duration, cancellationToken), CancellationToken.None);

    /// <summary>Runs the trace on a thread-pool thread with an asynchronous default handler (the VM stays stopped until it completes).</summary>
    public Task<TraceSummary> RunAsync(Func<BreakpointHit, ValueTask<TraceAction>> handler, long? maxEvents = null, TimeSpan? duration = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Task.Run(() => RunCore(handler, maxEvents, duration, cancellationToken), CancellationToken.None);
    }

    private TraceSummary RunCore(Func<BreakpointHit, ValueTask<TraceAction>>? handler, long? maxEvents, TimeSpan? duration, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var clock = Stopwatch.StartNew();
        long hits = 0;
        string reason;
        ulong? resumeAt = null;
        if (_atHit is (int pendingThread, ulong pendingRip) && !_stepped)
        {
            // A handler said Stop at a breakpoint: step over it before running on.
            TraceBreakpoint? under = _breakpoints.Find(b => b.Active && b.Kind == TraceEventKind.Breakpoint && b.Address == pendingRip);
            resumeAt = under is null ? null : StepOver(under, pendingThread, pendingRip);
        }

        _atHit = null;
        _stepped = false;
        Continue(resumeAt);
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

            long stopped = Stopwatch.GetTimestamp();
            _running = false;
            DateTimeOffset time = DateTimeOffset.UtcNow;
            X86GdbRegisters regs = ReadRegisters(thread);
            TraceBreakpoint? bp = stop.WatchKind is not null
                ? _breakpoints.Find(b => b.Active && b.Kind != TraceEventKind.Breakpoint && stop.WatchAddress >= b.Address && stop.WatchAddress < b.Address + (ulong)b.Length)
                : _breakpoints.Find(b => b.Active && b.Kind == TraceEventKind.Breakpoint && b.Address == regs.Rip);
            if (bp is null)
            {
                // Not ours (the guest's own int3 is re-injected by QEMU; nothing else traps here): run on.
                _channel.Send("c");
                _running = true;
                continue;
            }

            BreakpointHit hit = Describe(hits + 1, time, stopped, bp, thread - 1, regs, stop);
            if (!(Filter?.Matches(hit) ?? true) || !(bp.Filter?.Matches(hit) ?? true))
            {
                bp.Filtered++;
                ResumeAfter(bp, thread, regs.Rip);
                continue;
            }

            bp.Hits++;
            hits++;
            _atHit = (thread, regs.Rip);
            _stepped = false;
            Func<BreakpointHit, ValueTask<TraceAction>>? h = bp.Handler ?? handler;
            TraceAction action = TraceAction.Continue;
            if (h is not null)
            {
                ValueTask<TraceAction> pending = h(hit);
                action = pending.IsCompletedSuccessfully ? pending.Result : pending.AsTask().GetAwaiter().GetResult();
            }

            if (action == TraceAction.Stop)
            {
                reason = "handler";
                break;
            }

            if (action == TraceAction.Remove)
            {
                Expect($"z{bp.PacketType},{bp.Address:x},{bp.Length}", "OK");
                bp.Active = false;
                if (!_breakpoints.Exists(b => b.Active))
                {
                    _atHit = null;
                    reason = "no breakpoints left";
                    break;
                }

                _atHit = null;
                _channel.Send("c");
                _running = true;
                continue;
            }

            (int, ulong)? at = _atHit;
            _atHit = null;
            if (_stepped)
            {
                _stepped = false;
                _channel.Send("c");
                _running = true;
                continue;
            }

            ResumeAfter(bp, thread, at?.Item2 ?? regs.Rip);
        }

        StopIfRunning();
        return new TraceSummary(hits, clock.Elapsed, reason, _breakpoints);
    }

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
                string detached = _channel.Detach(_timeout);
                if (detached != "OK")
                {
                    throw new IOException($"the gdbstub at {StubEndpoint} refused to detach: {detached}");
                }
            }
            finally
            {
                _channel.Dispose();
            }

            if (StartedStub)
            {
                _qmp.HumanMonitorCommandAsync("gdbserver none").GetAwaiter().GetResult();
                if (_privateDirectory is not null)
                {
                    RemovePrivateDirectory(_privateDirectory);
                }
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
    /// <exception cref="NotSupportedException">The stub listens on something other than TCP or a UNIX socket.</exception>
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
                    : throw new NotSupportedException($"QEMU's gdbstub listens on \"{filename}\"; tracing connects to TCP and UNIX-socket stubs only (restart it with HMP gdbserver tcp:127.0.0.1:PORT, or let vmstate start one)");
            }
        }

        return null;
    }

    /// <summary>
    /// Starts a stub on a UNIX socket in a new directory only this user can enter; (null, null) when QEMU could not
    /// create it there (another user, a confined QEMU), the caller then falls back to loopback TCP.
    /// </summary>
    private static async Task<(string? Endpoint, string? Directory)> StartUnixStubAsync(QmpClient qmp, CancellationToken cancellationToken)
    {
        if (OperatingSystem.IsWindows())
        {
            return (null, null);
        }

        DirectoryInfo directory = Directory.CreateTempSubdirectory(PrivateDirectoryPrefix);
        File.SetUnixFileMode(directory.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string path = Path.Combine(directory.FullName, "gdb.sock");
        if (path.Contains(',', StringComparison.Ordinal) || System.Text.Encoding.UTF8.GetByteCount(path) >= 108)
        {
            // QEMU's option syntax has no escape for a comma here; sun_path holds 107 bytes.
            RemovePrivateDirectory(directory.FullName);
            return (null, null);
        }

        string said = await qmp.HumanMonitorCommandAsync($"gdbserver unix:{path},server=on,wait=off", cancellationToken: cancellationToken).ConfigureAwait(false);
        if (!said.Contains("Waiting for gdb connection", StringComparison.Ordinal))
        {
            RemovePrivateDirectory(directory.FullName);
            return (null, null);
        }

        return ("unix:" + path, directory.FullName);
    }

    /// <summary>The private directory of a UNIX-socket stub this library starts (<see cref="PrivateDirectoryPrefix"/>), else null.</summary>
    internal static string? PrivateDirectoryOf(string endpoint)
    {
        if (!endpoint.StartsWith("unix:", StringComparison.Ordinal))
        {
            return null;
        }

        string? directory = Path.GetDirectoryName(endpoint[5..]);
        return directory is not null && Path.GetFileName(directory).StartsWith(PrivateDirectoryPrefix, StringComparison.Ordinal) ? directory : null;
    }

    /// <summary>Removes a stub's private directory (QEMU unlinks its listening socket when the stub stops); errors are ignored.</summary>
    internal static void RemovePrivateDirectory(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Left in the temporary directory: empty or holding a dead socket, readable by this user only.
        }
    }

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static readonly byte[][] s_noops =
    [
        [0x0F, 0x1F, 0x44, 0x00, 0x00], // nopl 0x0(%rax,%rax,1): the ftrace site of every traceable function
        [0x66, 0x0F, 0x1F, 0x44, 0x00, 0x00],
        [0x0F, 0x1F, 0x40, 0x00],
        [0x0F, 0x1F, 0x00],
        [0x0F, 0x1F, 0x80, 0x00, 0x00, 0x00, 0x00],
        [0x0F, 0x1F, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
        [0x66, 0x0F, 0x1F, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
        [0xF3, 0x0F, 0x1E, 0xFA], // endbr64
        [0x66, 0x0F, 0x1F, 0x00], // osp nopl (%rax): an endbr64 the kernel sealed under IBT (alternative.c gen_endbr_poison)
        [0x66, 0x90],
        [0x90],
    ];

    /// <summary>The length of the no-op instruction <paramref name="code"/> starts with, else 0.</summary>
    internal static int NoopLength(ReadOnlySpan<byte> code)
    {
        foreach (byte[] noop in s_noops)
        {
            if (code.StartsWith(noop))
            {
                return noop.Length;
            }
        }

        return 0;
    }

    private TraceBreakpoint AddBreakpointCore(ulong address, string label, bool hardware, TraceHitFilter? filter, Func<BreakpointHit, ValueTask<TraceAction>>? handler)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var bp = new TraceBreakpoint(address, label, hardware) { Filter = filter, Handler = handler };
        if (BreakpointHit.IsKernelAddress(address))
        {
            // Read before the breakpoint goes in (under KVM a software breakpoint is an int3 in guest memory).
            var code = new byte[16];
            int n = _kernel.Read(address, code);
            int skip = NoopLength(code.AsSpan(0, n));
            if (skip > 0)
            {
                bp.SkipLength = skip;
                bp.Instruction = code[..skip];
            }
        }

        Insert(bp);
        _breakpoints.Add(bp);
        return bp;
    }

    private void Insert(TraceBreakpoint bp)
    {
        string what = bp.Kind switch
        {
            TraceEventKind.WriteWatch => "write watchpoint",
            TraceEventKind.ReadWatch => "read watchpoint",
            TraceEventKind.AccessWatch => "access watchpoint",
            _ => bp.Hardware ? "hardware breakpoint" : "software breakpoint",
        };
        CheckDebugRegisters(IsKvm, _breakpoints, bp, what);
        string reply = _channel.Request($"Z{bp.PacketType},{bp.Address:x},{bp.Length}", _timeout);
        if (reply != "OK")
        {
            string why = reply.Length == 0 ? "not supported by this QEMU" : reply;
            throw new InvalidOperationException($"QEMU did not set a {what} at {bp.Label} (0x{bp.Address:x}): {why}");
        }
    }

    /// <summary>
    /// True when QMP <c>query-kvm</c> answered that KVM runs the guest (<c>{"enabled": true, "present": true}</c>);
    /// false under TCG (<c>enabled</c> false, or KVM merely present on the host).
    /// </summary>
    internal static bool IsKvmEnabled(JsonElement queryKvm) =>
        queryKvm.ValueKind == JsonValueKind.Object && queryKvm.TryGetProperty("enabled", out JsonElement en) && en.ValueKind == JsonValueKind.True;

    /// <summary>
    /// Refuses <paramref name="next"/> when it needs a debug register and KVM runs the guest with all
    /// <see cref="KvmDebugRegisters"/> taken by the active hardware breakpoints and watchpoints in
    /// <paramref name="set"/> (QEMU would answer E22, or accept some kinds and never report them).
    /// </summary>
    /// <exception cref="InvalidOperationException">No debug register left.</exception>
    internal static void CheckDebugRegisters(bool isKvm, IReadOnlyList<TraceBreakpoint> set, TraceBreakpoint next, string what)
    {
        if (!isKvm || !next.Hardware)
        {
            return;
        }

        int inUse = 0;
        foreach (TraceBreakpoint b in set)
        {
            inUse += b.Active && b.Hardware ? 1 : 0;
        }

        if (inUse >= KvmDebugRegisters)
        {
            throw new InvalidOperationException($"cannot set a {what} at {next.Label} (0x{next.Address:x}): under KVM hardware breakpoints and watchpoints share the vCPU's {KvmDebugRegisters} debug registers, and {KvmDebugRegisters} are in use (TCG has no such limit)");
        }
    }

    private byte[]? ReadWatched(TraceBreakpoint bp)
    {
        var value = new byte[bp.Length];
        try
        {
            return bp.Reader!(bp.Address, value) == value.Length ? value : null;
        }
        catch (Exception e) when (e is VmStateException or IOException)
        {
            return null;
        }
    }

    /// <summary>RIP of the general-register vCPU (gdb <c>p</c> of register 16: one register, not the whole block).</summary>
    private ulong ReadRip()
    {
        string p = _channel.Request($"p{RipRegister:x}", _timeout);
        return p.Length == 16 && ulong.TryParse(p, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong le)
            ? BinaryPrimitives.ReverseEndianness(le)
            : throw new IOException($"the gdbstub at {StubEndpoint} answered \"p{RipRegister:x}\" with \"{p}\"");
    }

    private X86GdbRegisters ReadRegisters(int thread)
    {
        // QEMU makes the vCPU that stopped the general-register thread (gdb_set_stop_cpu), so no Hg is needed.
        string g = _channel.Request("g", _timeout);
        return X86GdbRegisters.TryParse(g, out X86GdbRegisters? regs)
            ? regs!
            : throw new IOException($"the gdbstub at {StubEndpoint} sent an unreadable register block for thread {thread}: \"{(g.Length > 40 ? g[..40] + "…" : g)}\"");
    }

    private BreakpointHit Describe(long sequence, DateTimeOffset time, long stopped, TraceBreakpoint bp, int vcpu, X86GdbRegisters regs, GdbStopReply stop)
    {
        int? pid = null, tgid = null;
        string? comm = null, problem = null;
        ulong task = 0;
        try
        {
            _tasks ??= new CurrentTaskReader(_kernel);
            (task, int p, int t, string c) = _tasks.Read(vcpu, regs);
            (pid, tgid, comm) = (p, t, c);
        }
        catch (Exception e) when (e is VmStateException or IOException)
        {
            problem = e.Message;
        }

        byte[]? oldValue = null, newValue = null;
        if (bp.Kind != TraceEventKind.Breakpoint)
        {
            oldValue = bp.LastValue;
            newValue = ReadWatched(bp);
            bp.LastValue = newValue;
        }

        return new BreakpointHit
        {
            Sequence = sequence,
            Time = time,
            StopTimestamp = stopped,
            Breakpoint = bp,
            Vcpu = vcpu,
            Registers = regs,
            Symbol = BreakpointHit.IsKernelAddress(regs.Rip) && _kernel.Symbols.TrySymbolize(regs.Rip, out KernelSymbol s, out ulong off) ? $"{s.Name}+0x{off:x}" : null,
            Pid = pid,
            Tgid = tgid,
            Comm = comm,
            TaskAddress = task,
            TaskProblem = problem,
            DataAddress = stop.WatchKind is null ? 0 : stop.WatchAddress,
            OldValue = oldValue,
            NewValue = newValue,
            Kernel = _kernel,
        };
    }

    /// <summary>Lets the VM run on after a hit of <paramref name="bp"/> by vCPU thread <paramref name="thread"/>.</summary>
    private void ResumeAfter(TraceBreakpoint bp, int thread, ulong rip)
    {
        // A watchpoint stops after the access: nothing to step over.
        Continue(bp.Kind == TraceEventKind.Breakpoint && rip == bp.Address ? StepOver(bp, thread, rip) : null);
    }

    /// <summary>
    /// Resumes the VM (gdb <c>c</c>); with <paramref name="at"/>, the stopped vCPU first moves there (<c>cADDR</c>:
    /// QEMU 7.2 <c>handle_continue</c> sets the PC of the vCPU that stopped, the one whose registers <c>g</c> read),
    /// which saves the round trip of a separate register write.
    /// </summary>
    private void Continue(ulong? at)
    {
        _channel.Send(at is ulong a ? $"c{a:x}" : "c");
        _running = true;
    }

    /// <summary>
    /// Gets the vCPU past the breakpoint at <paramref name="rip"/>: returns the address to continue at when the
    /// instruction there is a no-op (skipped without running it), else single-steps the vCPU and returns null.
    /// </summary>
    private ulong? StepOver(TraceBreakpoint bp, int thread, ulong rip)
    {
        if (bp.SkipLength > 0 && bp.Instruction is byte[] expected)
        {
            // The instruction is a no-op: moving RIP past it is what executing it would do, in one round trip and
            // without resuming the VM for a single step (which under TCG also flushes all translated code). It is
            // checked at every hit, since the kernel rewrites its ftrace sites when tracing is switched on.
            Span<byte> now = stackalloc byte[expected.Length];
            if (_kernel.Read(bp.Address, now) == now.Length && (now[0] == expected[0] || now[0] == 0xCC) && now[1..].SequenceEqual(expected.AsSpan(1)))
            {
                return rip + (ulong)bp.SkipLength;
            }
        }

        StepVcpu(bp, thread, rip);
        return null;
    }

    private void StepVcpu(TraceBreakpoint? bp, int thread, ulong rip)
    {
        // TCG: a single-stepping vCPU ignores breakpoints (check_for_breakpoints). KVM: the int3 byte is in guest
        // memory, so it comes out for the step. vCont with one thread resumes only that vCPU (gdb_continue_partial).
        bool takeOut = IsKvm && bp is { Hardware: false, Kind: TraceEventKind.Breakpoint };
        if (takeOut)
        {
            Expect($"z0,{bp!.Address:x},1", "OK");
        }

        for (int attempt = 0; ; attempt++)
        {
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

            // The stop that ends the step may not be the step's: another vCPU that hit a breakpoint while the VM was
            // being stopped for this hit leaves a debug request pending (cpu_handle_guest_debug), and QEMU stops the
            // VM for it as soon as the step resumes it, before the vCPU ran its instruction, and then clears the
            // vCPU's single-step flag (gdb_vm_state_change). Continuing from there would run the vCPU into the same
            // breakpoint again and report one hit twice, so the step is checked and repeated until RIP moved.
            if (attempt >= MaxStepAttempts || bp is null || ReadRip() != rip)
            {
                break;
            }
        }

        if (takeOut)
        {
            Expect($"Z0,{bp!.Address:x},1", "OK");
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
