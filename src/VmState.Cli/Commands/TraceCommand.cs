using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using VmState.Events;
using VmState.Linux;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate trace --qmp SOCKET break SYMBOL|ADDR</c> and <c>watch SYMBOL|ADDR LEN</c>: breakpoint and watchpoint
/// hits on a running VM through QEMU's gdbstub (<see cref="GdbTraceSession"/>), filtered in this process (pid, comm,
/// CR3, vCPU), one line (or JSON object) per hit; the typed events <c>exec</c> and <c>syscalls</c> (in the other
/// parts of this class) on the same session and output; and the hidden <c>trace-guard</c> that cleans up after a
/// trace killed with SIGKILL (<see cref="TraceGuard"/>).
/// </summary>
internal static partial class TraceCommand
{
    public static Command Create()
    {
        var command = new Command("trace", "Events on a running VM through QEMU's gdbstub (started for the trace if QEMU has none)");
        var live = new LiveOptions(command, new Option<string?>("--qmp") { Description = "the running QEMU's QMP socket" }, recursive: true);
        command.Subcommands.Add(Break(live));
        command.Subcommands.Add(Watch(live));
        command.Subcommands.Add(Exec(live));
        command.Subcommands.Add(Syscalls(live));
        return command;
    }

    public static Command Guard()
    {
        var stub = new Option<string>("--stub") { Required = true };
        var stop = new Option<bool>("--stop-stub");
        var keep = new Option<bool>("--keep-stub");
        var command = new Command("trace-guard", "internal: cleans up after a trace process that died") { Hidden = true };
        var live = new LiveOptions(command);
        command.Options.Add(stub);
        command.Options.Add(stop);
        command.Options.Add(keep);
        command.SetAction(async r =>
        {
            // Ctrl-C in the terminal reaches the whole process group: the tracer handles it, the guard must not die.
            using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => c.Cancel = true);
            using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => c.Cancel = true);
            using var sighup = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGHUP, c => c.Cancel = true);
            Console.Out.WriteLine("ready");
            Console.Out.Flush();
            if (!await TraceGuard.WaitForTracerAsync(Console.In))
            {
                return 0;
            }

            string endpoint = r.GetValue(stub)!;
            foreach (string line in await TraceGuard.RecoverAsync(c => live.Require(r, "trace-guard").ConnectAsync(TimeSpan.FromSeconds(10), c), endpoint, r.GetValue(stop)))
            {
                Console.Error.WriteLine($"vmstate trace-guard: {line}");
            }

            return 0;
        });
        return command;
    }

    /// <summary>The options every trace subcommand shares: limits, filters, output.</summary>
    private sealed class Shared
    {
        public Option<long?> MaxEvents { get; } = new("--max-events") { Description = "stop after this many (reported) hits" };

        public Option<double?> Duration { get; } = new("--duration") { Description = "stop after this many seconds" };

        public Option<int?> Pid { get; } = new("--pid") { Description = "only hits while this task (pid or thread-group id) runs" };

        public Option<string?> Comm { get; } = new("--comm") { Description = "only hits while a task of this comm runs" };

        public Option<string?> Cr3 { get; } = new("--cr3") { Description = "only hits in this address space (page-table root, hex; PCID and PTI bits ignored)" };

        public Option<int?> Vcpu { get; } = new("--vcpu") { Description = "only hits on this vCPU (0-based)" };

        public Option<bool> Json { get; } = JsonOption();

        public void AddTo(Command command)
        {
            foreach (Option o in (Option[])[MaxEvents, Duration, Pid, Comm, Cr3, Vcpu, Json])
            {
                command.Options.Add(o);
            }
        }

        public TraceHitFilter Filter(ParseResult r)
        {
            ulong? cr3 = null;
            if (r.GetValue(Cr3) is string text)
            {
                string digits = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? text[2..] : text;
                cr3 = ulong.TryParse(digits, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong v)
                    ? v
                    : throw new FormatException($"--cr3 {text}: not a hex number");
            }

            return new TraceHitFilter { Pid = r.GetValue(Pid), Comm = r.GetValue(Comm), Cr3 = cr3, Vcpu = r.GetValue(Vcpu) };
        }

        private static Option<bool> JsonOption()
        {
            Option<bool> json = CommonOptions.Json();
            json.Description = "one JSON object per hit (a line each, flushed), then a summary object";
            return json;
        }
    }

    private static Command Break(LiveOptions live)
    {
        var target = new Argument<string[]>("TARGET") { Description = "kernel symbol, symbol+offset, virtual address (0x...), or physical address in the kernel's text (phys:0x...); several for several breakpoints", Arity = ArgumentArity.OneOrMore };
        var hardware = new Option<bool>("--hardware") { Description = "hardware breakpoints (gdb Z1; at most 4 under KVM) instead of software ones" };
        var print = new Option<string?>("--print") { Description = "values to print at each hit: arg0..arg5 (RDI RSI RDX RCX R8 R9), each with :x (hex), :d, :u or :str (the C string it points to), comma-separated" };
        var shared = new Shared();
        var command = new Command("break", "Report every hit of kernel breakpoints: time, vCPU, RIP, symbol, pid and comm of the task, and the values asked for");
        command.Arguments.Add(target);
        command.Options.Add(hardware);
        command.Options.Add(print);
        shared.AddTo(command);
        command.SetAction((r, ct) => Task.FromResult(Guarded(() =>
        {
            TracePrintSpec? spec = r.GetValue(print) is string p ? TracePrintSpec.Parse(p) : null;
            return Run(r, live, shared, ct, (vm, session) =>
            {
                foreach (string t in r.GetValue(target)!)
                {
                    session.AddBreakpoint(Resolve(vm, t, code: true), t, r.GetValue(hardware));
                }
            }, spec);
        })));
        return command;
    }

    private static Command Watch(LiveOptions live)
    {
        var target = new Argument<string>("TARGET") { Description = "kernel symbol, virtual address (0x...; a user-space address needs --pid), or physical address (phys:0x...: watched at its kernel image or direct-map address)" };
        var length = new Argument<int>("LEN") { Description = "bytes watched: 1, 2, 4 or 8" };
        var access = new Option<string>("--access") { Description = "write (default), read or access (both)", DefaultValueFactory = _ => "write" };
        var shared = new Shared();
        var command = new Command("watch", "Report every write (or read) of guest memory: old and new value, the writer's RIP and symbol, and its task");
        command.Arguments.Add(target);
        command.Arguments.Add(length);
        command.Options.Add(access);
        shared.AddTo(command);
        command.SetAction((r, ct) => Task.FromResult(Guarded(() =>
        {
            int len = r.GetValue(length);
            if (len is not (1 or 2 or 4 or 8))
            {
                throw new FormatException($"LEN {len}: watch 1, 2, 4 or 8 bytes");
            }

            TraceEventKind kind = r.GetValue(access) switch
            {
                "write" => TraceEventKind.WriteWatch,
                "read" => TraceEventKind.ReadWatch,
                "access" => TraceEventKind.AccessWatch,
                var other => throw new FormatException($"--access {other}: write, read or access"),
            };
            return Run(r, live, shared, ct, (vm, session) =>
            {
                string t = r.GetValue(target)!;
                ulong address = Resolve(vm, t, code: false);
                Func<ulong, Memory<byte>, int>? reader = null;
                if (!BreakpointHit.IsKernelAddress(address))
                {
                    int pid = r.GetValue(shared.Pid) ?? throw new FormatException($"{t} is a user-space address: give --pid PID, the process whose page tables it is read through");
                    VmState.Arch.X86.AddressSpace space = vm.Linux.ProcessAddressSpace(pid);
                    reader = (a, m) => space.Read(a, m.Span);
                }

                session.AddWatchpoint(address, len, kind, t, reader);
            }, null);
        })));
        return command;
    }

    private static int Guarded(Func<int> body) => CommonOptions.Run(() =>
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is GdbStubBusyException or NotSupportedException or InvalidOperationException or FormatException)
        {
            Console.Error.WriteLine($"vmstate trace: {e.Message}");
            return 1;
        }
    });

    /// <summary>What a subcommand sets up on the session and how its events are shown.</summary>
    private sealed class TraceView
    {
        /// <summary>The table header of the text output, or null.</summary>
        public string? Header { get; init; }

        /// <summary>What was set, for the first line on stderr ("1 breakpoint(s)").</summary>
        public required string What { get; init; }

        /// <summary>What an event is called in the text summary ("hit(s)", "exec(s)").</summary>
        public string Events { get; init; } = "hit(s)";

        /// <summary>What is removed at the end, for the text summary ("breakpoints").</summary>
        public string Removed { get; init; } = "breakpoints";

        /// <summary>The handler of hits that have none of their own, or null.</summary>
        public Func<BreakpointHit, TraceAction>? Handler { get; init; }

        /// <summary>Text printed before the summary line (a count table), or null.</summary>
        public Action<StreamWriter>? TextSummary { get; init; }

        /// <summary>Members added to the JSON summary object, or null.</summary>
        public Action<Utf8JsonWriter>? JsonSummary { get; init; }
    }

    /// <summary>The output of a running trace, for the subcommands' handlers.</summary>
    private sealed class TraceOutput(StreamWriter writer, bool asJson)
    {
        private readonly List<double> _latencies = [];

        public StreamWriter Writer { get; } = writer;

        public bool AsJson { get; } = asJson;

        /// <summary>Notes the latency of <paramref name="hit"/>: from the stop reply taken off the socket to here (registers, task, filters).</summary>
        public void Mark(BreakpointHit hit) => _latencies.Add(System.Diagnostics.Stopwatch.GetElapsedTime(hit.StopTimestamp).TotalMicroseconds);

        public void WriteLatencies(Utf8JsonWriter w)
        {
            if (_latencies.Count > 0)
            {
                _latencies.Sort();
                w.WriteNumber("latency_median_us", Math.Round(_latencies[_latencies.Count / 2], 1));
                w.WriteNumber("latency_p99_us", Math.Round(_latencies[Math.Min(_latencies.Count - 1, (int)(_latencies.Count * 0.99))], 1));
            }
        }
    }

    /// <summary>
    /// The events so far on one stderr line, rewritten every second while the trace runs, when stdout goes to a pipe or
    /// file and stderr to a terminal (otherwise the two would interleave on the screen, or a log would fill with it).
    /// </summary>
    private sealed class LiveCount : IDisposable
    {
        private readonly TraceBreakpoint[] _set;
        private readonly string _events;
        private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
        private readonly Timer _timer;
        private readonly Lock _lock = new();
        private bool _written;
        private bool _stopped;

        public LiveCount(TraceBreakpoint[] set, string events)
        {
            _set = set;
            _events = events;
            _timer = new Timer(_ => Show(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        }

        public void Dispose()
        {
            _timer.Dispose();
            lock (_lock)
            {
                if (_written)
                {
                    TerminalText.RawError.WriteLine();
                }

                _stopped = true;
            }
        }

        private void Show()
        {
            // The counters are written by the trace thread; a value a hit behind is fine for a progress line.
            long hits = 0, filtered = 0;
            foreach (TraceBreakpoint b in _set)
            {
                hits += b.Hits;
                filtered += b.Filtered;
            }

            lock (_lock)
            {
                if (_stopped)
                {
                    return;
                }

                TerminalText.RawError.Write($"\rvmstate trace: {hits} {_events}, {filtered} filtered out, {_clock.Elapsed.TotalSeconds:0} s ");
                _written = true;
            }
        }
    }

    private static int Run(ParseResult r, LiveOptions live, Shared shared, CancellationToken ct, Action<Vm, GdbTraceSession> setUp, TracePrintSpec? spec) =>
        Run(r, live, shared, ct, (vm, session, output) =>
        {
            setUp(vm, session);
            int watches = session.Breakpoints.Count(b => b.Kind != TraceEventKind.Breakpoint);
            return new TraceView
            {
                What = watches > 0 ? $"{watches} watchpoint(s)" : $"{session.Breakpoints.Count} breakpoint(s)",
                Header = watches > 0
                    ? $"{"TIME",-15} {"CPU",3} {"RIP",-18} {"SYMBOL",-32} {"PID",6} {"COMM",-16} {"OLD",-18} NEW"
                    : $"{"TIME",-15} {"CPU",3} {"RIP",-18} {"SYMBOL",-32} {"PID",6} COMM",
                Removed = watches > 0 ? "watchpoints" : "breakpoints",
                Handler = hit =>
                {
                    output.Mark(hit);
                    Print(output.Writer, hit, output.AsJson, spec);
                    return TraceAction.Continue;
                },
            };
        });

    private static int Run(ParseResult r, LiveOptions live, Shared shared, CancellationToken ct, Func<Vm, GdbTraceSession, TraceOutput, TraceView> setUp)
    {
        if (live.Get(r) is not LiveTarget target)
        {
            Console.Error.WriteLine("vmstate trace: give --qmp SOCKET (a running QEMU) or --libvirt URI --domain NAME; tracing needs a live VM");
            return 1;
        }

        TraceHitFilter filter = shared.Filter(r);
        using Vm vm = CommonOptions.OpenVm(null, target, new VmOpenOptions(), pause: false);
        LinuxKernel kernel = vm.Linux.Kernel;
        var options = new GdbTraceOptions { GuardCommand = SelfCommand("trace-guard") };
        using GdbTraceSession session = GdbTraceSession.StartAsync(vm.Live!, kernel, options, ct).GetAwaiter().GetResult();
        session.Filter = filter.IsEmpty ? null : filter;
        bool asJson = r.GetValue(shared.Json);
        using Stream stdout = Console.OpenStandardOutput();
        using var writer = new StreamWriter(stdout) { AutoFlush = true };
        var output = new TraceOutput(writer, asJson);
        TraceView view = setUp(vm, session, output);
        if (session.StubWarning is string warning)
        {
            Console.Error.WriteLine($"vmstate: warning: {warning}");
        }

        Console.Error.WriteLine($"vmstate trace: {view.What} through the gdbstub at {session.StubEndpoint}{(session.StartedStub ? " (started for this trace)" : string.Empty)}, {(session.IsKvm ? "KVM" : "TCG")}; Ctrl-C to stop");
        if (!asJson && view.Header is string header)
        {
            writer.WriteLine(header);
        }

        TimeSpan? limit = r.GetValue(shared.Duration) is double s ? TimeSpan.FromSeconds(s) : null;
        TraceSummary summary;
        using (LiveCount? counter = Console.IsOutputRedirected && !Console.IsErrorRedirected ? new LiveCount([.. session.Breakpoints], view.Events) : null)
        {
            summary = session.Run(view.Handler, r.GetValue(shared.MaxEvents), limit, ct);
        }

        long filtered = session.Breakpoints.Sum(b => b.Filtered);
        session.Dispose();
        if (asJson)
        {
            WriteJsonLine(writer, w =>
            {
                w.WriteBoolean("summary", true);
                w.WriteNumber("hits", summary.Hits);
                if (session.Filter is not null)
                {
                    w.WriteNumber("filtered", filtered);
                }

                w.WriteNumber("seconds", Math.Round(summary.Elapsed.TotalSeconds, 3));
                w.WriteString("reason", summary.Reason);
                output.WriteLatencies(w);
                view.JsonSummary?.Invoke(w);
            });
        }
        else
        {
            view.TextSummary?.Invoke(writer);
            string skipped = session.Filter is null ? string.Empty : $", {filtered} filtered out";
            writer.WriteLine($"{summary.Hits} {view.Events}{skipped} in {summary.Elapsed.TotalSeconds:0.0} s ({summary.Reason}); {view.Removed} removed, guest running");
        }

        return 0;
    }

    /// <summary>
    /// The virtual address of a TARGET: a symbol, symbol+offset, 0xADDR, or phys:0xADDR (the kernel-virtual address
    /// the guest fetches <paramref name="code"/> or reaches data at: <see cref="PhysicalTraceAddress"/>).
    /// </summary>
    private static ulong Resolve(Vm vm, string target, bool code)
    {
        if (target.StartsWith("phys:", StringComparison.OrdinalIgnoreCase))
        {
            string digits = target[5..].StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? target[7..] : target[5..];
            ulong physical = ulong.TryParse(digits, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong p)
                ? p
                : throw new FormatException($"{target}: not a hex physical address");
            return code ? PhysicalTraceAddress.ForCode(vm.Linux.Kernel, physical) : PhysicalTraceAddress.ForData(vm.Linux.Kernel, physical);
        }

        if (target.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            && ulong.TryParse(target.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong address))
        {
            return address;
        }

        return vm.Linux.Symbol(target);
    }

    private static void Print(StreamWriter writer, BreakpointHit hit, bool asJson, TracePrintSpec? spec)
    {
        string time = hit.Time.ToLocalTime().ToString("HH:mm:ss.ffffff", CultureInfo.InvariantCulture);
        IReadOnlyList<(string Name, string Value)> values = spec?.Format(hit) ?? [];
        bool watch = hit.Breakpoint.Kind != TraceEventKind.Breakpoint;
        if (asJson)
        {
            WriteJsonLine(writer, w => WriteHitJson(w, hit, values));
            return;
        }

        string line = $"{time,-15} {hit.Vcpu,3} {hit.Registers.Rip:x16}   {hit.Symbol ?? (hit.Registers.IsKernelMode ? "?" : "(user)"),-32} {(hit.Pid?.ToString(CultureInfo.InvariantCulture) ?? "?"),6} {Comm(hit.Comm)}";
        if (watch)
        {
            line = $"{line,-93} {Value(hit.OldValue),-18} {Value(hit.NewValue)}";
        }

        foreach ((string name, string value) in values)
        {
            line += $" {name}={value}";
        }

        writer.WriteLine(line);
    }

    /// <summary>The members of a breakpoint or watchpoint hit's JSON object (<c>vmstate trace break --json</c>, and the web dashboard's event stream).</summary>
    internal static void WriteHitJson(Utf8JsonWriter w, BreakpointHit hit, IReadOnlyList<(string Name, string Value)> values)
    {
        bool watch = hit.Breakpoint.Kind != TraceEventKind.Breakpoint;
        w.WriteString("time", hit.Time.ToString("O", CultureInfo.InvariantCulture));
        w.WriteNumber("seq", hit.Sequence);
        w.WriteNumber("vcpu", hit.Vcpu);
        w.WriteString("rip", $"0x{hit.Registers.Rip:x}");
        w.WriteString("symbol", hit.Symbol);
        w.WriteString("breakpoint", hit.Breakpoint.Label);
        if (hit.Pid is int pid)
        {
            w.WriteNumber("pid", pid);
        }
        else
        {
            w.WriteNull("pid");
        }

        if (hit.Tgid is int tgid)
        {
            w.WriteNumber("tgid", tgid);
        }

        w.WriteString("comm", hit.Comm);
        w.WriteString("cr3", $"0x{hit.Registers.Cr3:x}");
        if (watch)
        {
            w.WriteString("address", $"0x{hit.DataAddress:x}");
            w.WriteString("old", Value(hit.OldValue));
            w.WriteString("new", Value(hit.NewValue));
        }

        foreach ((string name, string value) in values)
        {
            w.WriteString(name, value);
        }
    }

    /// <summary>A watched value as a little-endian number in hex, or "?" when it could not be read.</summary>
    private static string Value(byte[]? bytes)
    {
        if (bytes is null)
        {
            return "?";
        }

        ulong v = 0;
        for (int i = bytes.Length - 1; i >= 0; i--)
        {
            v = (v << 8) | bytes[i];
        }

        return $"0x{v.ToString($"x{bytes.Length * 2}", CultureInfo.InvariantCulture)}";
    }

    /// <summary>One JSON object on one line (readable: '+' and '<' are not escaped; the output is not HTML).</summary>
    private static void WriteJsonLine(StreamWriter writer, Action<Utf8JsonWriter> body)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }

        writer.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan));
    }

    /// <summary>This program's own command line for <paramref name="verb"/> (dotnet vmstate.dll, or the apphost/AOT executable).</summary>
    internal static string[] SelfCommand(string verb)
    {
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell this program's path to start the trace guard");
        string name = Path.GetFileNameWithoutExtension(exe);
        // Under `dotnet vmstate.dll` the program is the dll beside this code (Assembly.Location is empty in a Native
        // AOT or single-file build, so it is not used).
        return name == "dotnet" ? [exe, Path.Combine(AppContext.BaseDirectory, "vmstate.dll"), verb] : [exe, verb];
    }
}
