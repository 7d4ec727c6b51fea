using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using VmState.Linux;
using VmState.Machine;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate procdump [SNAPSHOT] PID -o FILE</c>: an ELF core of one guest process, for gdb.</summary>
internal static class ProcdumpCommand
{
    public static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var output = new Option<string>("--output", "-o") { Description = "the core file to write (written atomically)", Required = true };
        var command = new Command("procdump", "Write an ELF core of one guest process (its memory, thread registers, auxv, mapped files) that gdb opens with the process's binary");
        var input = new KernelInput(command, "PID", "the process id");
        command.Options.Add(output);
        command.Options.Add(json);
        command.SetAction(r => KernelInput.Run(() =>
        {
            int pid = input.TrailingPid(r);
            using Vm vm = input.Open(r);
            LinuxKernel kernel = vm.Linux.Kernel;
            var clock = Stopwatch.StartNew();
            string path = r.GetValue(output)!;
            ProcessCoreSummary s = ProcessCore.Write(kernel, pid, path);
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartObject();
                    w.WriteString("path", path);
                    w.WriteNumber("pid", s.Pid);
                    w.WriteString("comm", s.Comm);
                    w.WriteNumber("segments", s.Segments);
                    w.WriteNumber("pagesWritten", s.PagesWritten);
                    w.WriteNumber("pagesMissing", s.PagesMissing);
                    w.WriteNumber("fileBytes", s.FileBytes);
                    w.WriteStartArray("threads");
                    foreach ((int tid, string source) in s.Threads)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("tid", tid);
                        w.WriteString("registers", source);
                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                    w.WriteNumber("seconds", Math.Round(clock.Elapsed.TotalSeconds, 3));
                    w.WriteEndObject();
                });
            }
            else
            {
                Console.WriteLine($"wrote {path}: process {s.Pid} ({s.Comm}), {s.Threads.Count} thread(s), {s.Segments} VMAs, {s.PagesWritten} pages ({s.PagesMissing} not present), {s.FileBytes:N0} bytes in {clock.Elapsed.TotalSeconds:F2} s");
                foreach ((int tid, string source) in s.Threads)
                {
                    Console.WriteLine($"  thread {tid}: registers from {source}");
                }

                Console.WriteLine($"open it with: gdb BINARY {path}");
            }

            return 0;
        }));
        return command;
    }
}
