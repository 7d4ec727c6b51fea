using System.CommandLine;
using VmState.Linux;

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
            ListOutput.Write(LinuxListViews.Maps, vm.Linux.Maps(pid), r.GetValue(json));
            return 0;
        }));
        return command;
    }
}
