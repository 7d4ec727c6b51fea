using System.CommandLine;
using VmState.Linux;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate netdev SNAPSHOT</c>: the guest kernel's network devices (name, MAC, flags), like ip link.</summary>
internal static class NetdevCommand
{
    public static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var command = new Command("netdev", "List the network devices of a Linux guest (name, MAC as the kernel sees it, flags, MTU)");
        var input = new KernelInput(command);
        command.Options.Add(json);
        command.SetAction(r => KernelInput.Run(() =>
        {
            using Vm vm = input.Open(r);
            ListOutput.Write(LinuxListViews.NetDevices, vm.Linux.NetDevices(), r.GetValue(json));
            return 0;
        }));
        return command;
    }
}
