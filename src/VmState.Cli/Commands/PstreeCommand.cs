using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Linux;

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
            IReadOnlyList<ProcessTreeNode> roots = vm.Linux.ProcessTree();
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartArray();
                    foreach (ProcessTreeNode root in roots)
                    {
                        WriteJson(w, root);
                    }

                    w.WriteEndArray();
                });
            }
            else
            {
                var sb = new StringBuilder();
                foreach (ProcessTreeNode root in roots)
                {
                    WriteText(sb, root, string.Empty, string.Empty);
                }

                Console.Write(sb.ToString());
            }

            return 0;
        }));
        return command;
    }

    private static void WriteText(StringBuilder sb, ProcessTreeNode node, string first, string rest)
    {
        LinuxProcess p = node.Process;
        sb.Append(first).Append(CultureInfo.InvariantCulture, $"{p.Name}({p.Pid}){(p.Uid != 0 ? $" uid {p.Uid}" : string.Empty)}\n");
        for (int i = 0; i < node.Children.Count; i++)
        {
            bool last = i == node.Children.Count - 1;
            WriteText(sb, node.Children[i], rest + (last ? "└─ " : "├─ "), rest + (last ? "   " : "│  "));
        }
    }

    /// <summary>One node of pstree --json with its children (also the web server's).</summary>
    internal static void WriteJson(Utf8JsonWriter w, ProcessTreeNode node)
    {
        w.WriteStartObject();
        w.WriteNumber("pid", node.Process.Pid);
        w.WriteString("name", node.Process.Name);
        w.WriteString("comm", node.Process.Comm);
        w.WriteNumber("uid", node.Process.Uid);
        w.WriteStartArray("children");
        foreach (ProcessTreeNode c in node.Children)
        {
            WriteJson(w, c);
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }
}
