using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Linux;
using VmState.Machine;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate ps SNAPSHOT</c>: the guest's processes from its task list, with no profile (kallsyms + BTF).</summary>
internal static class PsCommand
{
    public static Command Create()
    {
        var threads = new Option<bool>("--threads", "-T") { Description = "list every thread, not only thread-group leaders" };
        var noCmdline = new Option<bool>("--no-cmdline") { Description = "do not read each process's argument vector from its memory" };
        var timings = new Option<bool>("--timings") { Description = "print the time of each phase on stderr" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("ps", "List the processes of a Linux guest (pid, ppid, uid, state, comm, command line)");
        var input = new KernelInput(command);
        command.Options.Add(threads);
        command.Options.Add(noCmdline);
        command.Options.Add(timings);
        command.Options.Add(json);
        command.SetAction(r => KernelInput.Run(() =>
        {
            var clock = Stopwatch.StartNew();
            var report = new StringBuilder();
            double total = 0;
            void Phase(string name)
            {
                double ms = clock.Elapsed.TotalMilliseconds;
                total += ms;
                report.Append(CultureInfo.InvariantCulture, $"{name,-48} {ms,8:F1} ms\n");
                clock.Restart();
            }

            using Vm vm = input.Open(r);
            Phase("open snapshot");
            LinuxKernel kernel = vm.Linux.Kernel;
            Phase($"locate kernel + kallsyms ({kernel.Method})");
            _ = kernel.Types;
            Phase("BTF");
            IReadOnlyList<LinuxProcess> list = vm.Linux.Processes(r.GetValue(threads), !r.GetValue(noCmdline));
            Phase("walk tasks");
            if (r.GetValue(json))
            {
                WriteJson(kernel, list, Console.OpenStandardOutput());
            }
            else
            {
                WriteText(list, r.GetValue(threads));
            }

            Phase("print");
            if (r.GetValue(timings))
            {
                report.Append(CultureInfo.InvariantCulture, $"{"total (after process start)",-48} {total,8:F1} ms\n");
                Console.Error.Write(report.ToString());
            }

            return 0;
        }));
        return command;
    }

    private static void WriteText(IReadOnlyList<LinuxProcess> list, bool threads)
    {
        var sb = new StringBuilder(list.Count * 80);
        sb.Append(threads ? "    PID    TID   PPID    UID S    START COMM             COMMAND\n" : "    PID   PPID    UID S    START COMM             COMMAND\n");
        foreach (LinuxProcess p in list)
        {
            string command = p.Cmdline ?? (p.IsKernelThread ? $"[{p.Comm}]" : string.Empty);
            if (threads)
            {
                sb.Append(CultureInfo.InvariantCulture, $"{p.Tgid,7} {p.Pid,6} ");
            }
            else
            {
                sb.Append(CultureInfo.InvariantCulture, $"{p.Pid,7} ");
            }

            sb.Append(CultureInfo.InvariantCulture, $"{p.Ppid,6} {p.Uid,6} {p.State} {p.StartTimeNs / 1e9,8:F2} {p.Comm,-16} {command}\n");
        }

        using Stream stdout = Console.OpenStandardOutput();
        byte[] bytes = Encoding.UTF8.GetBytes(TerminalText.Escape(sb.ToString()));
        stdout.Write(bytes);
    }

    private static void WriteJson(LinuxKernel kernel, IReadOnlyList<LinuxProcess> list, Stream output)
    {
        using var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("release", kernel.Release);
        w.WriteStartArray("processes");
        foreach (LinuxProcess p in list)
        {
            w.WriteStartObject();
            w.WriteNumber("pid", p.Pid);
            w.WriteNumber("tgid", p.Tgid);
            w.WriteNumber("ppid", p.Ppid);
            w.WriteNumber("uid", p.Uid);
            w.WriteNumber("gid", p.Gid);
            w.WriteString("state", p.State.ToString());
            w.WriteString("comm", p.Comm);
            w.WriteBoolean("kernelThread", p.IsKernelThread);
            w.WriteNumber("threads", p.Threads);
            w.WriteNumber("startTimeNs", p.StartTimeNs);
            if (p.Cmdline is string c)
            {
                w.WriteString("cmdline", c);
            }
            else
            {
                w.WriteNull("cmdline");
            }

            w.WriteString("task", Hex.Of(p.TaskAddress));
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
        w.Flush();
        output.WriteByte((byte)'\n');
    }
}
