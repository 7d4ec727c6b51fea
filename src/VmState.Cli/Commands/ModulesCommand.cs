using System.CommandLine;
using VmState.Linux;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate modules SNAPSHOT</c>: the guest's loaded kernel modules, like /proc/modules.</summary>
internal static class ModulesCommand
{
    public static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var command = new Command("modules", "List the loaded modules of a Linux guest (name, size, references, state, base)");
        var input = new KernelInput(command);
        command.Options.Add(json);
        command.SetAction(r => KernelInput.Run(() =>
        {
            using Vm vm = input.Open(r);
            ListOutput.Write(LinuxListViews.Modules, vm.Linux.Modules(), r.GetValue(json));
            return 0;
        }));
        return command;
    }
}
