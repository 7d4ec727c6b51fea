using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Linux;
using VmState.Machine;

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
            IReadOnlyList<LinuxModule> modules = vm.Linux.Modules();
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartArray();
                    foreach (LinuxModule mod in modules)
                    {
                        w.WriteStartObject();
                        w.WriteString("name", mod.Name);
                        w.WriteNumber("size", mod.Size);
                        w.WriteNumber("references", mod.References);
                        w.WriteString("state", mod.State);
                        w.WriteString("base", Hex.Of(mod.Base));
                        w.WriteNumber("symbols", mod.SymbolCount);
                        w.WriteString("module", Hex.Of(mod.Address));
                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                });
            }
            else
            {
                var sb = new StringBuilder();
                sb.Append(CultureInfo.InvariantCulture, $"{"NAME",-24} {"SIZE",7} {"REFS",5} {"STATE",-8} BASE\n");
                foreach (LinuxModule mod in modules)
                {
                    sb.Append(CultureInfo.InvariantCulture, $"{mod.Name,-24} {mod.Size,7} {mod.References,5} {mod.State,-8} {Hex.Of(mod.Base)}\n");
                }

                Console.Write(sb.ToString());
            }

            return 0;
        }));
        return command;
    }
}
