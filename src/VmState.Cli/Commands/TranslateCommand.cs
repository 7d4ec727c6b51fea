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
            if (vm.Machine.Architecture == VmState.Arch.CpuArchitecture.Arm64)
            {
                return Arm64Translate.Run(vm, AddressParser.Parse(input.Trailing(r), "VA"), r.GetValue(spaces.CpuOption), r.GetValue(ttbr) is string t0 ? AddressParser.Parse(t0, "--ttbr") : null, spaces.Pid(r), r.GetValue(explain), r.GetValue(json));
            }

            AddressSpace space = spaces.Select(r, vm);
            Translation t = space.Translate(AddressParser.Parse(input.Trailing(r), "VA"));
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w => WriteJson(w, space, t));
            }
            else
            {
                if (r.GetValue(explain))
                {
                    Console.WriteLine($"mode {space.Mode}, CR3 {Hex.Of(space.Cr3)} (root table at {Hex.Of(space.Root)})");
                    foreach (PagingEntry e in t.Entries)
                    {
                        string flags = e.Present ? $"{(e.Writable ? "W" : "-")}{(e.User ? "U" : "-")}{(e.PageSize ? "PS" : "--")}{(e.NoExecute ? " NX" : string.Empty)}" : "not present";
                        Console.WriteLine($"  {e.Level,-6} at {Hex.Of(e.Address),-18} = {Hex.Of(e.Value),-20} {flags}");
                    }
                }

                Console.WriteLine(t.PhysicalAddress is ulong p
                    ? $"{Hex.Of(t.VirtualAddress)} -> {Hex.Of(p)} ({Hex.Size(t.PageSize)} page{(t.Writable ? ", writable" : string.Empty)}{(t.User ? ", user" : ", supervisor")}{(t.NoExecute ? ", no-execute" : string.Empty)})"
                    : $"{Hex.Of(t.VirtualAddress)} is not mapped: {t.Failure}");
            }

            return t.Success ? 0 : 3;
        }));
        return command;
    }

    /// <summary>The translate --json document (also the web server's).</summary>
    internal static void WriteJson(Utf8JsonWriter w, AddressSpace space, Translation t)
    {
        w.WriteStartObject();
        w.WriteString("virtualAddress", Hex.Of(t.VirtualAddress));
        w.WriteString("mode", space.Mode.ToString());
        w.WriteString("cr3", Hex.Of(space.Cr3));
        w.WriteBoolean("mapped", t.Success);
        if (t.PhysicalAddress is ulong pa)
        {
            w.WriteString("physicalAddress", Hex.Of(pa));
            w.WriteNumber("pageSize", t.PageSize);
            w.WriteBoolean("writable", t.Writable);
            w.WriteBoolean("user", t.User);
            w.WriteBoolean("noExecute", t.NoExecute);
        }
        else
        {
            w.WriteString("failure", t.Failure);
        }

        w.WriteStartArray("levels");
        foreach (PagingEntry e in t.Entries)
        {
            w.WriteStartObject();
            w.WriteString("level", e.Level);
            w.WriteString("entryAddress", Hex.Of(e.Address));
            w.WriteString("value", Hex.Of(e.Value));
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }
}
