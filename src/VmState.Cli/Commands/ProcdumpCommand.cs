using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using VmState.IO;
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
        var exe = new Option<string?>("--exe") { Description = "also write the process's executable, read from the guest's page cache (every page must be in memory), so that `gdb EXE CORE` needs nothing from the guest" };
        var command = new Command("procdump", "Write an ELF core of one guest process (its memory, thread registers, auxv, mapped files) that gdb opens with the process's binary");
        var input = new KernelInput(command, "PID", "the process id");
        command.Options.Add(output);
        command.Options.Add(exe);
        command.Options.Add(json);
        command.SetAction(r => KernelInput.Run(() =>
        {
            int pid = input.TrailingPid(r);
            using Vm vm = input.Open(r);
            LinuxKernel kernel = vm.Linux.Kernel;
            var clock = Stopwatch.StartNew();
            string path = r.GetValue(output)!;
            ProcessCoreSummary s = ProcessCore.Write(kernel, pid, path);
            string? exePath = r.GetValue(exe);
            CachedFile? binary = exePath is null ? null : WriteExecutable(kernel, pid, exePath);
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
                    if (binary is not null)
                    {
                        w.WriteStartObject("exe");
                        w.WriteString("path", exePath);
                        w.WriteString("guestPath", binary.Path);
                        w.WriteNumber("bytes", binary.Size);
                        w.WriteEndObject();
                    }

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

                if (binary is not null)
                {
                    Console.WriteLine($"wrote {exePath}: {TerminalText.Escape(binary.Path)} from the guest's page cache, {binary.Size:N0} bytes");
                }

                Console.WriteLine($"open it with: gdb {(binary is null ? "BINARY" : exePath)} {path}");
            }

            return 0;
        }));
        return command;
    }

    /// <summary>Writes the process's executable (its page-cache copy) to <paramref name="path"/>, atomically; every page must be in memory.</summary>
    private static CachedFile WriteExecutable(LinuxKernel kernel, int pid, string path)
    {
        CachedFile file = PageCache.Executable(kernel, pid)
            ?? throw new KernelDataException("mm->exe_file", $"process {pid} has no executable file");
        if (!file.IsComplete)
        {
            throw new KernelDataException("page cache", $"{file.Path}: {file.PageCount - file.PagesPresent} of its {file.PageCount} pages are not in the guest's page cache; the file cannot be written whole");
        }

        OutputFile.Write(path, OutputRules.ForInputs([kernel.Machine.SourcePath]), stream =>
        {
            byte[] buffer = new byte[1 << 16];
            for (long at = 0; at < file.Size;)
            {
                int n = file.Read(at, buffer);
                stream.Write(buffer, 0, n);
                at += n;
            }
        });
        return file;
    }
}
