using System.CommandLine;
using System.Globalization;
using VmState.Events;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate trace --qmp SOCKET syscalls</c>: every system call in the guest (<see cref="SyscallTracer"/>), or with
/// <c>--count</c> a count per system call at the end, like <c>strace -c</c>.
/// </summary>
internal static partial class TraceCommand
{
    private static Command Syscalls(LiveOptions live)
    {
        var count = new Option<bool>("--count") { Description = "print no calls, but a table of calls per system call when the trace ends (like strace -c)" };
        var shared = new Shared();
        var command = new Command("syscalls", "Report system calls in the guest: time, vCPU, pid and comm of the caller, number, name (from the guest kernel's sys_call_table) and the six argument registers; or count them (--count)");
        command.Options.Add(count);
        shared.AddTo(command);
        command.SetAction((r, ct) => Task.FromResult(Guarded(() => Run(r, live, shared, ct, (_, session, output) =>
        {
            bool counting = r.GetValue(count);
            var counts = new Dictionary<long, long>();
            SyscallTracer tracer = null!;
            tracer = SyscallTracer.Subscribe(session, e =>
            {
                output.Mark(e.Hit);
                if (counting)
                {
                    counts[e.Number] = counts.GetValueOrDefault(e.Number) + 1;
                }
                else
                {
                    PrintSyscall(output, e);
                }

                return TraceAction.Continue;
            });
            if (tracer.TableProblem is string problem)
            {
                Console.Error.WriteLine($"vmstate: warning: system calls are shown by number only: {problem}");
            }

            return new TraceView
            {
                What = $"a breakpoint on {SyscallTracer.EntryFunction} ({tracer.Table?.Count.ToString(CultureInfo.InvariantCulture) ?? "no"} system call names from {SyscallTable.TableSymbol})",
                Header = counting ? null : $"{"TIME",-15} {"CPU",3} {"PID",6} {"COMM",-16} {"NR",4} CALL",
                Events = "call(s)",
                Removed = "breakpoint",
                TextSummary = counting ? w => WriteCountTable(w, counts, tracer) : null,
                JsonSummary = counting ? w => WriteCountJson(w, counts, tracer) : null,
            };
        }))));
        return command;
    }

    private static string SyscallName(SyscallTracer tracer, long number) => tracer.Table is null || (number & SyscallTracer.X32SyscallBit) != 0
        ? "?"
        : tracer.Table.Name(number) ?? "(none)";

    /// <summary>The counts, most calls first, then by number.</summary>
    private static List<KeyValuePair<long, long>> Sorted(Dictionary<long, long> counts)
    {
        var list = counts.ToList();
        list.Sort((a, b) => a.Value != b.Value ? b.Value.CompareTo(a.Value) : a.Key.CompareTo(b.Key));
        return list;
    }

    private static void WriteCountTable(StreamWriter w, Dictionary<long, long> counts, SyscallTracer tracer)
    {
        w.WriteLine($"{"calls",9} {"nr",6}  syscall");
        w.WriteLine($"{new string('-', 9)} {new string('-', 6)}  {new string('-', 16)}");
        foreach ((long nr, long calls) in Sorted(counts))
        {
            w.WriteLine($"{calls,9} {nr,6}  {SyscallName(tracer, nr)}");
        }

        w.WriteLine($"{new string('-', 9)} {new string('-', 6)}  {new string('-', 16)}");
        w.WriteLine($"{counts.Values.Sum(),9} {string.Empty,6}  total");
    }

    private static void WriteCountJson(System.Text.Json.Utf8JsonWriter w, Dictionary<long, long> counts, SyscallTracer tracer)
    {
        w.WriteStartArray("syscalls");
        foreach ((long nr, long calls) in Sorted(counts))
        {
            w.WriteStartObject();
            w.WriteNumber("nr", nr);
            string? name = (nr & SyscallTracer.X32SyscallBit) != 0 ? null : tracer.Table?.Name(nr);
            w.WriteString("name", name);
            w.WriteNumber("calls", calls);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void PrintSyscall(TraceOutput output, SyscallEvent e)
    {
        BreakpointHit hit = e.Hit;
        if (output.AsJson)
        {
            WriteJsonLine(output.Writer, w =>
            {
                w.WriteString("time", hit.Time.ToString("O", CultureInfo.InvariantCulture));
                w.WriteNumber("seq", hit.Sequence);
                w.WriteNumber("vcpu", hit.Vcpu);
                WriteNumberOrNull(w, "pid", hit.Pid);
                WriteNumberOrNull(w, "tgid", hit.Tgid);
                w.WriteString("comm", hit.Comm);
                w.WriteNumber("nr", e.Number);
                w.WriteString("name", e.Name);
                w.WriteStartArray("args");
                foreach (ulong a in e.Arguments)
                {
                    w.WriteStringValue($"0x{a:x}");
                }

                w.WriteEndArray();
            });
            return;
        }

        string time = hit.Time.ToLocalTime().ToString("HH:mm:ss.ffffff", CultureInfo.InvariantCulture);
        string args = e.Arguments.Count == 0 ? "?" : string.Join(", ", e.Arguments.Select(a => $"0x{a:x}"));
        output.Writer.WriteLine($"{time,-15} {hit.Vcpu,3} {Number(hit.Pid),6} {Comm(hit.Comm),-16} {e.Number,4} {e.Name ?? "?"}({args})");
    }

    /// <summary>A task's comm for a terminal (escaped: a guest names its tasks), or "?".</summary>
    private static string Comm(string? comm) => comm is null ? "?" : TracePrintSpec.Escape(System.Text.Encoding.UTF8.GetBytes(comm));
}
