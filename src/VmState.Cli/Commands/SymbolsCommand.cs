using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Linux;
using VmState.Machine;

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
            LinuxKernel kernel = vm.Linux.Kernel;
            Kallsyms symbols = kernel.Symbols;
            var matches = new List<(KernelSymbol Symbol, ulong Offset, string? Module)>();
            if (at is not null)
            {
                ulong a = AddressParser.Parse(at, "--address");
                if (!symbols.TrySymbolize(a, out KernelSymbol s, out ulong off))
                {
                    Console.Error.WriteLine($"vmstate: no kernel symbol at or within 64 KiB below {Hex.Of(a)}");
                    return 1;
                }

                matches.Add((s, off, null));
            }
            else
            {
                for (int i = 0; i < symbols.Count; i++)
                {
                    string name = symbols.NameAt(i);
                    if (glob is null || Matches(name, glob))
                    {
                        matches.Add((symbols[i], 0, null));
                    }
                }

                if (r.GetValue(modules))
                {
                    foreach (LinuxModule mod in ModuleList.Read(kernel))
                    {
                        foreach (KernelSymbol s in ModuleList.Symbols(kernel, mod))
                        {
                            if (glob is null || Matches(s.Name, glob))
                            {
                                matches.Add((s, 0, mod.Name));
                            }
                        }
                    }
                }
            }

            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartArray();
                    foreach ((KernelSymbol s, ulong off, string? module) in matches)
                    {
                        w.WriteStartObject();
                        w.WriteString("name", s.Name);
                        w.WriteString("address", Hex.Of(s.Address));
                        w.WriteString("type", s.Type.ToString());
                        if (module is not null)
                        {
                            w.WriteString("module", module);
                        }

                        if (at is not null)
                        {
                            w.WriteString("offset", Hex.Of(off));
                        }

                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                });
            }
            else
            {
                var sb = new StringBuilder(matches.Count * 48);
                foreach ((KernelSymbol s, ulong off, string? module) in matches)
                {
                    if (module is not null)
                    {
                        sb.Append(CultureInfo.InvariantCulture, $"{s.Address:x16} {s.Type} {s.Name}\t[{module}]\n");
                    }
                    else if (at is null)
                    {
                        sb.Append(CultureInfo.InvariantCulture, $"{s.Address:x16} {s.Type} {s.Name}\n");
                    }
                    else
                    {
                        sb.Append(CultureInfo.InvariantCulture, $"{s.Address + off:x16} {s.Name}+0x{off:x} ({s.Type}, symbol at {s.Address:x16})\n");
                    }
                }

                using Stream stdout = Console.OpenStandardOutput();
                stdout.Write(Encoding.UTF8.GetBytes(TerminalText.Escape(sb.ToString())));
            }

            return matches.Count > 0 ? 0 : 1;
        }));
        return command;
    }

    /// <summary>Glob match of the whole name ('*' any run, '?' one character); a pattern without wildcards matches as a substring.</summary>
    public static bool Matches(string name, string pattern)
    {
        if (pattern.IndexOfAny(['*', '?']) < 0)
        {
            return name.Contains(pattern, StringComparison.Ordinal);
        }

        int n = 0, p = 0, star = -1, mark = 0;
        while (n < name.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == name[n]))
            {
                n++;
                p++;
            }
            else if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                mark = n;
            }
            else if (star >= 0)
            {
                p = star + 1;
                n = ++mark;
            }
            else
            {
                return false;
            }
        }

        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }

        return p == pattern.Length;
    }
}
