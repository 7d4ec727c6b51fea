using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Linux;
using VmState.Machine;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate pstree SNAPSHOT</c>: the guest's processes as a tree of parents and children.</summary>
internal static class PstreeCommand
{
    public static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var command = new Command("pstree", "Show the processes of a Linux guest as a tree (pid, name, uid)");
        var input = new KernelInput(command);
        command.Options.Add(json);
        command.SetAction(r => KernelInput.Run(() =>
        {
            using Vm vm = input.Open(r);
            IReadOnlyList<LinuxProcess> processes = vm.Linux.Processes(threads: false, commandLines: false);
            var pids = processes.Select(p => p.Pid).ToHashSet();
            ILookup<int, LinuxProcess> children = processes.ToLookup(p => pids.Contains(p.Ppid) && p.Ppid != p.Pid ? p.Ppid : 0);
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartArray();
                    foreach (LinuxProcess root in children[0].OrderBy(p => p.Pid))
                    {
                        WriteJson(w, root, children, 0);
                    }

                    w.WriteEndArray();
                });
            }
            else
            {
                var sb = new StringBuilder();
                foreach (LinuxProcess root in children[0].OrderBy(p => p.Pid))
                {
                    WriteText(sb, root, children, string.Empty, string.Empty, 0);
                }

                Console.Write(sb.ToString());
            }

            return 0;
        }));
        return command;
    }

    private const int MaxDepth = 256;

    private static void WriteText(StringBuilder sb, LinuxProcess p, ILookup<int, LinuxProcess> children, string first, string rest, int depth)
    {
        sb.Append(first).Append(CultureInfo.InvariantCulture, $"{p.Comm}({p.Pid}){(p.Uid != 0 ? $" uid {p.Uid}" : string.Empty)}\n");
        if (depth >= MaxDepth)
        {
            return;
        }

        var kids = children[p.Pid].OrderBy(c => c.Pid).ToList();
        for (int i = 0; i < kids.Count; i++)
        {
            bool last = i == kids.Count - 1;
            WriteText(sb, kids[i], children, rest + (last ? "└─ " : "├─ "), rest + (last ? "   " : "│  "), depth + 1);
        }
    }

    private static void WriteJson(Utf8JsonWriter w, LinuxProcess p, ILookup<int, LinuxProcess> children, int depth)
    {
        w.WriteStartObject();
        w.WriteNumber("pid", p.Pid);
        w.WriteString("comm", p.Comm);
        w.WriteNumber("uid", p.Uid);
        w.WriteStartArray("children");
        if (depth < MaxDepth)
        {
            foreach (LinuxProcess c in children[p.Pid].OrderBy(c => c.Pid))
            {
                WriteJson(w, c, children, depth + 1);
            }
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }
}
