using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using VmState.Events;
using VmState.Linux;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate trace --qmp SOCKET break SYMBOL|ADDR</c>: breakpoint hits on a running VM through QEMU's gdbstub
/// (<see cref="GdbTraceSession"/>), one line (or JSON object) per hit; and the hidden <c>trace-guard</c> that
/// cleans up after a trace killed with SIGKILL (<see cref="TraceGuard"/>).
/// </summary>
internal static class TraceCommand
{
    public static Command Create()
    {
        var qmp = new Option<string?>("--qmp") { Description = "the running QEMU's QMP socket", Recursive = true };
        var command = new Command("trace", "Events on a running VM through QEMU's gdbstub (started for the trace if QEMU has none)");
        command.Options.Add(qmp);
        command.Subcommands.Add(Break(qmp));
        return command;
    }

    public static Command Guard()
    {
        var qmp = new Option<string>("--qmp") { Required = true };
        var stub = new Option<string>("--stub") { Required = true };
        var stop = new Option<bool>("--stop-stub");
        var keep = new Option<bool>("--keep-stub");
        var command = new Command("trace-guard", "internal: cleans up after a trace process that died") { Hidden = true };
        command.Options.Add(qmp);
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
            int colon = endpoint.LastIndexOf(':');
            int port = int.Parse(endpoint[(colon + 1)..], CultureInfo.InvariantCulture);
            foreach (string line in await TraceGuard.RecoverAsync(r.GetValue(qmp)!, endpoint[..colon], port, r.GetValue(stop)))
            {
                Console.Error.WriteLine($"vmstate trace-guard: {line}");
            }

            return 0;
        });
        return command;
    }

    private static Command Break(Option<string?> qmp)
    {
        var target = new Argument<string[]>("TARGET") { Description = "kernel symbol, symbol+offset, or virtual address (0x...); several for several breakpoints", Arity = ArgumentArity.OneOrMore };
        var maxEvents = new Option<long?>("--max-events") { Description = "stop after this many hits" };
        var duration = new Option<double?>("--duration") { Description = "stop after this many seconds" };
        var hardware = new Option<bool>("--hardware") { Description = "hardware breakpoints (gdb Z1; at most 4 under KVM) instead of software ones" };
        Option<bool> json = CommonOptions.Json();
        json.Description = "one JSON object per hit (a line each, flushed), then a summary object";
        var command = new Command("break", "Report every hit of kernel breakpoints: time, vCPU, RIP, symbol, pid and comm of the task");
        command.Arguments.Add(target);
        command.Options.Add(maxEvents);
        command.Options.Add(duration);
        command.Options.Add(hardware);
        command.Options.Add(json);
        command.SetAction((r, ct) => Task.FromResult(CommonOptions.Run(() =>
        {
            try
            {
                return Trace(r, ct);
            }
            catch (Exception e) when (e is GdbStubBusyException or NotSupportedException or InvalidOperationException)
            {
                Console.Error.WriteLine($"vmstate trace: {e.Message}");
                return 1;
            }
        })));
        return command;

        int Trace(ParseResult r, CancellationToken ct)
        {
            string? socket = r.GetValue(qmp);
            if (socket is null)
            {
                Console.Error.WriteLine("vmstate trace: give --qmp SOCKET (a running QEMU); tracing needs a live VM");
                return 1;
            }

            using Vm vm = CommonOptions.OpenVm(null, socket, new VmOpenOptions(), pause: false);
            LinuxKernel kernel = vm.Linux.Kernel;
            var targets = new List<(ulong Address, string Label)>();
            foreach (string t in r.GetValue(target)!)
            {
                targets.Add((Resolve(vm, t), t));
            }

            var options = new GdbTraceOptions { GuardCommand = SelfCommand("trace-guard") };
            using GdbTraceSession session = GdbTraceSession.StartAsync(vm.Live!, kernel, options, ct).GetAwaiter().GetResult();
            foreach ((ulong address, string label) in targets)
            {
                session.AddBreakpoint(address, label, r.GetValue(hardware));
            }

            bool asJson = r.GetValue(json);
            using Stream stdout = Console.OpenStandardOutput();
            using var writer = new StreamWriter(stdout) { AutoFlush = true };
            if (session.StubWarning is string warning)
            {
                Console.Error.WriteLine($"vmstate: warning: {warning}");
            }

            Console.Error.WriteLine($"vmstate trace: {targets.Count} breakpoint(s) through the gdbstub at {session.StubEndpoint}{(session.StartedStub ? " (started for this trace)" : string.Empty)}, {(session.IsKvm ? "KVM" : "TCG")}; Ctrl-C to stop");
            if (!asJson)
            {
                writer.WriteLine($"{"TIME",-15} {"CPU",3} {"RIP",-18} {"SYMBOL",-32} {"PID",6} COMM");
            }

            TimeSpan? limit = r.GetValue(duration) is double s ? TimeSpan.FromSeconds(s) : null;
            TraceSummary summary = session.Run(hit => { Print(writer, hit, asJson); return TraceAction.Continue; }, r.GetValue(maxEvents), limit, ct);
            session.Dispose();
            if (asJson)
            {
                WriteJsonLine(writer, w =>
                {
                    w.WriteBoolean("summary", true);
                    w.WriteNumber("hits", summary.Hits);
                    w.WriteNumber("seconds", Math.Round(summary.Elapsed.TotalSeconds, 3));
                    w.WriteString("reason", summary.Reason);
                });
            }
            else
            {
                writer.WriteLine($"{summary.Hits} hit(s) in {summary.Elapsed.TotalSeconds:0.0} s ({summary.Reason}); breakpoints removed, guest running");
            }

            return 0;
        }
    }

    private static ulong Resolve(Vm vm, string target)
    {
        if (target.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            && ulong.TryParse(target.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong address))
        {
            return address;
        }

        return vm.Linux.Symbol(target);
    }

    private static void Print(StreamWriter writer, BreakpointHit hit, bool asJson)
    {
        string time = hit.Time.ToLocalTime().ToString("HH:mm:ss.ffffff", CultureInfo.InvariantCulture);
        if (asJson)
        {
            WriteJsonLine(writer, w =>
            {
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

                w.WriteString("comm", hit.Comm);
                w.WriteString("cr3", $"0x{hit.Registers.Cr3:x}");
            });
            return;
        }

        writer.WriteLine($"{time,-15} {hit.Vcpu,3} {hit.Registers.Rip:x16}   {hit.Symbol ?? "?",-32} {(hit.Pid?.ToString(CultureInfo.InvariantCulture) ?? "?"),6} {hit.Comm ?? "?"}");
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
    private static string[] SelfCommand(string verb)
    {
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell this program's path to start the trace guard");
        string name = Path.GetFileNameWithoutExtension(exe);
        // Under `dotnet vmstate.dll` the program is the dll beside this code (Assembly.Location is empty in a Native
        // AOT or single-file build, so it is not used).
        return name == "dotnet" ? [exe, Path.Combine(AppContext.BaseDirectory, "vmstate.dll"), verb] : [exe, verb];
    }
}
