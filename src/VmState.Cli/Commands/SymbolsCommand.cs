using System.CommandLine;
using VmState.Linux;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate symbols SNAPSHOT [PATTERN]</c>: the kernel's kallsyms, like the guest's /proc/kallsyms without modules.</summary>
internal static class SymbolsCommand
{
    public static Command Create()
    {
        var pattern = new Argument<string?>("PATTERN")
        {
            Description = "glob (* and ?) matched against whole names; without wildcards, names containing it",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var address = new Option<string?>("--address", "-a") { Description = "show the symbol containing this address (symbol+offset) instead of a list" };
        var modules = new Option<bool>("--modules", "-m") { Description = "also list the loaded modules' symbols, marked [module] as /proc/kallsyms does" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("symbols", "List the Linux kernel's symbols (decoded from kallsyms in guest memory)");
        var input = new KernelInput(command);
        command.Arguments.Add(pattern);
        command.Options.Add(address);
        command.Options.Add(modules);
        command.Options.Add(json);
        command.SetAction(r => KernelInput.Run(() =>
        {
            string? glob = r.GetValue(pattern);
            string? at = r.GetValue(address);
            if (glob is not null && at is not null)
            {
                throw new ArgumentException("give a PATTERN or --address, not both");
            }

            using Vm vm = input.Open(r);
            _ = vm.Linux.Kernel;
            IReadOnlyList<SymbolMatch> matches;
            if (at is not null)
            {
                ulong a = AddressParser.Parse(at, "--address");
                if (vm.Linux.SymbolAt(a) is not SymbolMatch found)
                {
                    Console.Error.WriteLine($"vmstate: no kernel symbol at or within 64 KiB below {Hex.Of(a)}");
                    return 1;
                }

                matches = [found];
            }
            else
            {
                matches = vm.Linux.FindSymbols(glob is null ? null : new NamePattern(glob), r.GetValue(modules));
            }

            ListOutput.Write(LinuxListViews.Symbols(byAddress: at is not null), matches, r.GetValue(json));
            return matches.Count > 0 ? 0 : 1;
        }));
        return command;
    }
}
