using System.CommandLine;
using System.Globalization;
using VmState.Events;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate trace --qmp SOCKET exec</c>: every program started in the guest (<see cref="ExecTracer"/>), like execsnoop.</summary>
internal static partial class TraceCommand
{
    private static Command Exec(LiveOptions live)
    {
        var shared = new Shared();
        var command = new Command("exec", "Report every program started in the guest: time, pid, parent pid, uid, comm, file name and arguments (a breakpoint on the kernel's setup_new_exec)");
        shared.AddTo(command);
        command.SetAction((r, ct) => Task.FromResult(Guarded(() => Run(r, live, shared, ct, (_, session, output) =>
        {
            ExecTracer.Subscribe(session, e =>
            {
                output.Mark(e.Hit);
                PrintExec(output, e);
                return TraceAction.Continue;
            });
            return new TraceView
            {
                What = $"a breakpoint on {ExecTracer.Function}",
                Header = $"{"TIME",-15} {"PID",6} {"PPID",6} {"UID",5} {"COMM",-16} {"FILENAME",-24} ARGV",
                Events = "exec(s)",
                Removed = "breakpoint",
            };
        }))));
        return command;
    }

    /// <summary>The fields every OS event's JSON line starts with: time, sequence, vCPU, pid and tgid.</summary>
    private static void WriteHitStart(System.Text.Json.Utf8JsonWriter w, BreakpointHit hit)
    {
        w.WriteString("time", hit.Time.ToString("O", CultureInfo.InvariantCulture));
        w.WriteNumber("seq", hit.Sequence);
        w.WriteNumber("vcpu", hit.Vcpu);
        WriteNumberOrNull(w, "pid", hit.Pid);
        WriteNumberOrNull(w, "tgid", hit.Tgid);
    }

    private static void PrintExec(TraceOutput output, ExecEvent e)
    {
        BreakpointHit hit = e.Hit;
        if (output.AsJson)
        {
            WriteJsonLine(output.Writer, w => WriteExecJson(w, e));
            return;
        }

        string time = hit.Time.ToLocalTime().ToString("HH:mm:ss.ffffff", CultureInfo.InvariantCulture);
        string argv = string.Join(' ', e.Argv.Select(ShellWord)) + (e.ArgvTruncated ? " ..." : string.Empty);
        output.Writer.WriteLine($"{time,-15} {Number(hit.Pid),6} {Number(e.Ppid),6} {(e.Uid?.ToString(CultureInfo.InvariantCulture) ?? "?"),5} {Comm(hit.Comm),-16} {ShellWord(e.Filename),-24} {argv}");
    }

    /// <summary>The members of an exec event's JSON object (<c>vmstate trace exec --json</c>, and the web dashboard's event stream).</summary>
    internal static void WriteExecJson(System.Text.Json.Utf8JsonWriter w, ExecEvent e)
    {
        BreakpointHit hit = e.Hit;
        WriteHitStart(w, hit);
        WriteNumberOrNull(w, "ppid", e.Ppid);
        if (e.Uid is uint uid)
        {
            w.WriteNumber("uid", uid);
        }
        else
        {
            w.WriteNull("uid");
        }

        w.WriteString("comm", hit.Comm);
        w.WriteString("filename", TracePrintSpec.Escape(e.Filename));
        w.WriteStartArray("argv");
        foreach (byte[] a in e.Argv)
        {
            w.WriteStringValue(TracePrintSpec.Escape(a));
        }

        w.WriteEndArray();
        w.WriteNumber("argc", e.Argc);
        w.WriteBoolean("truncated", e.ArgvTruncated);
        if (e.Problem is string problem)
        {
            w.WriteString("problem", problem);
        }
    }

    /// <summary>A guest string for a terminal: escaped, and quoted when empty or holding a space or quote.</summary>
    private static string ShellWord(byte[] bytes)
    {
        string text = TracePrintSpec.Escape(bytes);
        return text.Length == 0 || text.AsSpan().IndexOfAny(" \"'") >= 0 ? $"\"{text}\"" : text;
    }

    private static string Number(int? value) => value?.ToString(CultureInfo.InvariantCulture) ?? "?";

    private static void WriteNumberOrNull(System.Text.Json.Utf8JsonWriter w, string name, int? value)
    {
        if (value is int v)
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }
}
