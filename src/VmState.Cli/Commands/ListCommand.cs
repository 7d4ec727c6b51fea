using System.CommandLine;
using VmState.Live;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate list --libvirt URI [--json]</c>: the domains a libvirt connection sees, with their state.</summary>
internal static class ListCommand
{
    public static Command Create()
    {
        var uri = new Option<string>("--libvirt") { Description = "the libvirt URI, e.g. qemu:///system", Required = true };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("list", "List the VMs (domains) of a libvirt connection, with state, libvirt id, QEMU pid and UUID");
        command.Options.Add(uri);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            using LibvirtConnection connection = LibvirtConnection.Open(r.GetValue(uri)!, readOnly: true);
            ListOutput.Write(LibvirtDomainInfo.View, connection.ListDomains(), r.GetValue(json));
            return 0;
        }));
        return command;
    }
}
