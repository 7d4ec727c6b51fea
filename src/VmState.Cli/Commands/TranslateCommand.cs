using System.CommandLine;
using System.Text.Json;
using VmState.Arch.X86;
using VmState.Linux;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate translate SOURCE VA</c>: virtual to physical through a vCPU's page tables.</summary>
internal static class TranslateCommand
{
    public static Command Create()
    {
        var explain = new Option<bool>("--explain") { Description = "show the entry read at every paging level" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("translate", "Translate a virtual address to a guest-physical one through the guest's page tables");
        // [SNAPSHOT] VA: SNAPSHOT is left out with --qmp. The kernel options matter with --pid: the process is
        // found through the kernel's symbols and types.
        var input = new KernelInput(command, "VA", "the virtual address (0x-prefixed hex or decimal)");
        var spaces = new AddressSpaceOptions(command);
        var ttbr = new Option<string?>("--ttbr") { Description = "AArch64: use this table base (a TTBR0_EL1 or TTBR1_EL1 value) for the half of the address space the address is in" };
        command.Options.Add(explain);
        command.Options.Add(json);
        command.Options.Add(ttbr);
        command.SetAction(r => KernelInput.Run(() =>
        {
            using Vm vm = input.Open(r);
            // On x86 the address space is chosen before the address is parsed, as it always was: the first bad value
            // is the one reported.
            TranslationView t = vm.Machine.Architecture == VmState.Arch.CpuArchitecture.Arm64
                ? Arm64Translate.View(vm, AddressParser.Parse(input.Trailing(r), "VA"), r.GetValue(spaces.CpuOption), r.GetValue(ttbr) is string t0 ? AddressParser.Parse(t0, "--ttbr") : null, spaces.Pid(r))
                : View(spaces.Select(r, vm), AddressParser.Parse(input.Trailing(r), "VA"));
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(t.WriteJson);
            }
            else
            {
                t.WriteText(r.GetValue(explain));
            }

            return t.Translation.Success ? 0 : 3;
        }));
        return command;
    }

    /// <summary>An x86 translation through <paramref name="space"/> as translate shows it (also the web server's).</summary>
    internal static TranslationView View(AddressSpace space, ulong va)
    {
        Translation t = space.Translate(va);
        var levels = new List<TranslationView.Level>(t.Entries.Count);
        foreach (PagingEntry e in t.Entries)
        {
            string flags = e.Present ? $"{(e.Writable ? "W" : "-")}{(e.User ? "U" : "-")}{(e.PageSize ? "PS" : "--")}{(e.NoExecute ? " NX" : string.Empty)}" : "not present";
            levels.Add(new TranslationView.Level(e.Level, e.Address, e.Value, flags, w => w.WriteString("level", e.Level)));
        }

        return new TranslationView(
            t,
            w =>
            {
                w.WriteString("mode", space.Mode.ToString());
                w.WriteString("cr3", Hex.Of(space.Cr3));
            },
            w => w.WriteBoolean("noExecute", t.NoExecute),
            $"mode {space.Mode}, CR3 {Hex.Of(space.Cr3)} (root table at {Hex.Of(space.Root)})",
            levels,
            $"page{(t.Writable ? ", writable" : string.Empty)}{(t.User ? ", user" : ", supervisor")}{(t.NoExecute ? ", no-execute" : string.Empty)}");
    }
}
