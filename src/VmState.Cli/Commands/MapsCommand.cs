using System.CommandLine;
using System.Text;
using System.Text.Json;
using VmState.Linux;
using VmState.Machine;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate maps [SNAPSHOT] PID</c>: a guest process's memory map, as /proc/PID/maps shows it.</summary>
internal static class MapsCommand
{
    public static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var command = new Command("maps", "Print the memory map (VMAs) of a guest process, like /proc/PID/maps");
        var input = new KernelInput(command, "PID", "the process id");
        command.Options.Add(json);
        command.SetAction(r => KernelInput.Run(() =>
        {
            int pid = input.TrailingPid(r);
            using Vm vm = input.Open(r);
            IReadOnlyList<LinuxVma> vmas = vm.Linux.Maps(pid);
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartArray();
                    foreach (LinuxVma v in vmas)
                    {
                        w.WriteStartObject();
                        w.WriteString("start", Hex.Of(v.Start));
                        w.WriteString("end", Hex.Of(v.End));
                        w.WriteString("perms", v.Permissions);
                        w.WriteString("flags", Hex.Of(v.Flags));
                        w.WriteString("offset", Hex.Of(v.Offset));
                        w.WriteString("dev", $"{v.Major:x2}:{v.Minor:x2}");
                        w.WriteNumber("inode", v.Inode);
                        w.WriteString("name", v.Name);
                        w.WriteString("vma", Hex.Of(v.Address));
                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                });
            }
            else
            {
                var sb = new StringBuilder();
                foreach (LinuxVma v in vmas)
                {
                    sb.Append(v.Format()).Append('\n');
                }

                Console.Write(sb.ToString());
            }

            return 0;
        }));
        return command;
    }
}
