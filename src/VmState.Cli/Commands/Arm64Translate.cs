using VmState.Arch.Arm64;
using VmState.Machine;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate translate</c> on an AArch64 guest: a walk through TTBR0_EL1 or TTBR1_EL1 of one vCPU.</summary>
internal static class Arm64Translate
{
    /// <summary>Translates <paramref name="va"/> and prints the result; returns the exit code.</summary>
    public static int Run(Vm vm, ulong va, int cpu, ulong? ttbr, int? pid, bool explain, bool json)
    {
        bool upper = ((va >> 55) & 1) != 0;
        Arm64AddressSpace space = Select(vm, va, cpu, ttbr, pid);

        Arm64Translation t;
        try
        {
            t = space.Translate(va);
        }
        catch (NotSupportedException e)
        {
            throw new ArgumentException(e.Message, e);
        }

        if (json)
        {
            CommonOptions.WriteJson(w =>
            {
                w.WriteStartObject();
                w.WriteString("virtualAddress", Hex.Of(t.VirtualAddress));
                w.WriteString("architecture", "aarch64");
                w.WriteString("tableBase", t.TableBase);
                w.WriteString("tcr", Hex.Of(space.Tcr));
                w.WriteString("root", Hex.Of(t.Root));
                w.WriteBoolean("mapped", t.Success);
                if (t.PhysicalAddress is ulong pa)
                {
                    w.WriteString("physicalAddress", Hex.Of(pa));
                    w.WriteNumber("pageSize", t.PageSize);
                    w.WriteBoolean("writable", t.Writable);
                    w.WriteBoolean("user", t.User);
                }
                else
                {
                    w.WriteString("failure", t.Failure);
                }

                w.WriteStartArray("levels");
                foreach (Arm64PagingEntry e in t.Entries)
                {
                    w.WriteStartObject();
                    w.WriteNumber("level", e.Level);
                    w.WriteString("kind", e.Kind);
                    w.WriteString("entryAddress", Hex.Of(e.Address));
                    w.WriteString("value", Hex.Of(e.Value));
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            });
        }
        else
        {
            if (explain)
            {
                int bits = upper ? space.UpperVaBits : space.LowerVaBits;
                Console.WriteLine($"AArch64 4 KiB granule, {bits}-bit VA, {t.TableBase} (TCR_EL1 {Hex.Of(space.Tcr)}), first table at {Hex.Of(t.Root)}");
                foreach (Arm64PagingEntry e in t.Entries)
                {
                    string flags = !e.Valid ? "invalid"
                        : e.IsTable ? "table"
                        : $"{e.Kind} {(e.ReadOnly ? "RO" : "RW")}{(e.User ? " EL0" : string.Empty)}{(e.PrivilegedExecuteNever ? " PXN" : string.Empty)}{(e.UserExecuteNever ? " UXN" : string.Empty)}{(e.Accessed ? " AF" : string.Empty)}";
                    Console.WriteLine($"  L{e.Level}     at {Hex.Of(e.Address),-18} = {Hex.Of(e.Value),-20} {flags}");
                }
            }

            Console.WriteLine(t.PhysicalAddress is ulong p
                ? $"{Hex.Of(t.VirtualAddress)} -> {Hex.Of(p)} ({Hex.Size(t.PageSize)} {(t.Entries.Count > 0 && t.Entries[^1].IsBlock ? "block" : "page")}{(t.Writable ? ", writable" : ", read-only")}{(t.User ? ", EL0" : ", EL1 only")})"
                : $"{Hex.Of(t.VirtualAddress)} is not mapped: {t.Failure}");
        }

        return t.Success ? 0 : 3;
    }

    /// <summary>
    /// The address space that translates <paramref name="va"/>: process <paramref name="pid"/>'s (its mm-&gt;pgd as
    /// TTBR0_EL1) when given, else vCPU <paramref name="cpu"/>'s, with <paramref name="ttbr"/> as the table base of
    /// the half <paramref name="va"/> is in when given.
    /// </summary>
    public static Arm64AddressSpace Select(Vm vm, ulong va, int cpu, ulong? ttbr, int? pid)
    {
        if (pid is int p)
        {
            return ttbr is null ? vm.Linux.Arm64ProcessAddressSpace(p) : throw new ArgumentException("give --pid or --ttbr, not both");
        }

        bool upper = ((va >> 55) & 1) != 0;
        try
        {
            return CpuAddressSpaces.OfArm64(vm.Machine, cpu, upper ? null : ttbr, upper ? ttbr : null);
        }
        catch (VmStateNotFoundException e) when (e.Kind == VmStateObjectKind.Cpu)
        {
            throw new ArgumentException($"--cpu {cpu}: the snapshot has vCPUs 0-{vm.Machine.Arm64Cpus.Count - 1}", e);
        }
    }
}
