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
        // [SNAPSHOT] VA: SNAPSHOT is left out with --qmp.
        var positional = new Argument<string[]>("SNAPSHOT VA")
        {
            Description = "the snapshot file (omit with --qmp) and the virtual address (0x-prefixed hex or decimal)",
            Arity = new ArgumentArity(1, 2),
        };
        Option<string?> qmp = CommonOptions.Qmp();
        var cpu = new Option<int>("--cpu") { Description = "vCPU whose CR3 and paging mode to use", DefaultValueFactory = _ => 0 };
        var cr3 = new Option<string?>("--cr3") { Description = "use this page-table root instead of the vCPU's CR3 (same paging mode)" };
        Option<int?> pid = PidOption();
        var explain = new Option<bool>("--explain") { Description = "show the entry read at every paging level" };
        Option<string?> snapshot = CommonOptions.SnapshotName();
        Option<bool> json = CommonOptions.Json();
        Option<bool> raw = CommonOptions.Raw();
        Option<string?> mainRam = CommonOptions.MainRam();
        Option<string?> systemMap = KernelInput.SystemMapOption();
        Option<string?> btf = KernelInput.BtfOption();
        var command = new Command("translate", "Translate a virtual address to a guest-physical one through the guest's page tables");
        command.Arguments.Add(positional);
        command.Options.Add(qmp);
        var pause = new Option<bool>("--pause") { Description = "with --qmp: pause the guest while reading (resumed afterwards)" };
        command.Options.Add(pause);
        command.Options.Add(cpu);
        command.Options.Add(cr3);
        command.Options.Add(pid);
        command.Options.Add(explain);
        command.Options.Add(snapshot);
        command.Options.Add(json);
        command.Options.Add(raw);
        command.Options.Add(mainRam);
        command.Options.Add(systemMap);
        command.Options.Add(btf);
        command.SetAction(r => KernelInput.Run(() =>
        {
            // --system-map and --btf matter with --pid: the process is found through the kernel's symbols and types.
            var kernel = new KernelLocatorOptions { SystemMapPath = r.GetValue(systemMap), BtfPath = r.GetValue(btf) };
            using Vm vm = CommonOptions.OpenVm(r.GetValue(positional)!.Length == 2 ? r.GetValue(positional)![0] : null, r.GetValue(qmp), CommonOptions.VmOptions(r.GetValue(snapshot), r.GetValue(raw), cacheReads: true, kernel, r.GetValue(mainRam)), r.GetValue(pause));
            AddressSpace space = SpaceFor(vm, r.GetValue(cpu), r.GetValue(cr3), r.GetValue(pid));
            Translation t = space.Translate(AddressParser.Parse(r.GetValue(positional)![^1], "VA"));
            if (r.GetValue(json))
            {
                using var w = new Utf8JsonWriter(Console.OpenStandardOutput(), new JsonWriterOptions { Indented = true });
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
                w.Flush();
                Console.WriteLine();
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

    /// <summary>The --pid option: translate through a guest process's own page tables.</summary>
    public static Option<int?> PidOption() => new("--pid", "-p")
    {
        Description = "use the page tables of this Linux guest process (its mm->pgd, found with no profile) instead of a vCPU's",
    };

    /// <summary>The address space of <paramref name="pid"/> when given, else of vCPU <paramref name="cpu"/> (or <paramref name="cr3"/>).</summary>
    public static AddressSpace SpaceFor(Vm vm, int cpu, string? cr3, int? pid)
    {
        if (pid is not int p)
        {
            return SpaceFor(vm.Machine, cpu, cr3);
        }

        if (cr3 is not null)
        {
            throw new ArgumentException("give --pid or --cr3, not both");
        }

        LinuxKernel kernel = vm.Linux.Kernel;
        KernelObject mm = MemoryMaps.UserMm(MemoryMaps.FindTask(kernel, p));
        return kernel.ProcessAddressSpace(mm.Member("pgd").ToUInt64());
    }

    public static AddressSpace SpaceFor(MachineState m, int cpu, string? cr3)
    {
        if (m.Cpus.Count == 0)
        {
            throw new ArgumentException($"{m.SourcePath} has no vCPU state, so there is no page-table root; give a snapshot or core with CPU notes");
        }

        if (cpu < 0 || cpu >= m.Cpus.Count)
        {
            throw new ArgumentException($"--cpu {cpu}: the snapshot has vCPUs 0-{m.Cpus.Count - 1}");
        }

        X86CpuState c = m.Cpus[cpu];
        AddressSpace space = AddressSpace.Of(m.Memory, c);
        return cr3 is null ? space : new AddressSpace(m.Memory, space.Mode, AddressParser.Parse(cr3, "--cr3"), (c.Cr4 & 0x10) != 0);
    }
}
