using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Linux;
using VmState.Machine;

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
            IReadOnlyList<LinuxNetDevice> devices = vm.Linux.NetDevices();
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartArray();
                    foreach (LinuxNetDevice d in devices)
                    {
                        w.WriteStartObject();
                        w.WriteString("name", d.Name);
                        w.WriteNumber("ifindex", d.IfIndex);
                        w.WriteString("mac", d.Mac);
                        w.WriteString("permanentMac", d.PermanentMac);
                        w.WriteString("flags", Hex.Of(d.Flags));
                        w.WriteBoolean("up", d.Up);
                        w.WriteNumber("mtu", d.Mtu);
                        w.WriteString("netDevice", Hex.Of(d.Address));
                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                });
            }
            else
            {
                var sb = new StringBuilder();
                sb.Append(CultureInfo.InvariantCulture, $"{"IDX",3} {"NAME",-10} {"MAC",-17} {"STATE",-5} {"MTU",5} FLAGS\n");
                foreach (LinuxNetDevice d in devices)
                {
                    sb.Append(CultureInfo.InvariantCulture, $"{d.IfIndex,3} {d.Name,-10} {d.Mac,-17} {(d.Up ? "UP" : "DOWN"),-5} {d.Mtu,5} {Hex.Of(d.Flags)}\n");
                }

                Console.Write(sb.ToString());
            }

            return 0;
        }));
        return command;
    }
}
