using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Linux;
using VmState.Views;

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

            using Vm vm = input.Open(r, line => report.Append(CultureInfo.InvariantCulture, $"index cache: {line}\n"));
            Phase("open snapshot");
            LinuxKernel kernel = vm.Linux.Kernel;
            Phase($"locate kernel + kallsyms ({kernel.Method})");
            _ = kernel.Types;
            Phase("BTF");
            IReadOnlyList<LinuxProcess> list = vm.Linux.Processes(r.GetValue(threads), !r.GetValue(noCmdline));
            Phase("walk tasks");
            ListView<LinuxProcess> view = LinuxListViews.Processes(r.GetValue(threads));
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w => WriteJson(w, kernel.Release, view, list));
            }
            else
            {
                ListOutput.Write(view, list, json: false);
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

    /// <summary>The ps --json document (also the web server's).</summary>
    internal static void WriteJson(Utf8JsonWriter w, string release, ListView<LinuxProcess> view, IReadOnlyList<LinuxProcess> list)
    {
        w.WriteStartObject();
        w.WriteString("release", release);
        w.WritePropertyName("processes");
        ListJson.WriteArray(w, view, list);
        w.WriteEndObject();
    }
}
