using VmState.Arch.Arm64;
using VmState.Machine;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate translate</c> on an AArch64 guest: a walk through TTBR0_EL1 or TTBR1_EL1 of one vCPU.</summary>
internal static class Arm64Translate
{
    /// <summary>Translates <paramref name="va"/> through the tables <see cref="Select"/> picks, as translate shows it.</summary>
    public static TranslationView View(Vm vm, ulong va, int cpu, ulong? ttbr, int? pid)
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

        var levels = new List<TranslationView.Level>(t.Entries.Count);
        foreach (Arm64PagingEntry e in t.Entries)
        {
            string flags = !e.Valid ? "invalid"
                : e.IsTable ? "table"
                : $"{e.Kind} {(e.ReadOnly ? "RO" : "RW")}{(e.User ? " EL0" : string.Empty)}{(e.PrivilegedExecuteNever ? " PXN" : string.Empty)}{(e.UserExecuteNever ? " UXN" : string.Empty)}{(e.Accessed ? " AF" : string.Empty)}";
            levels.Add(new TranslationView.Level($"L{e.Level}", e.Address, e.Value, flags, w =>
            {
                w.WriteNumber("level", e.Level);
                w.WriteString("kind", e.Kind);
            }));
        }

        int bits = upper ? space.UpperVaBits : space.LowerVaBits;
        return new TranslationView(
            t,
            w =>
            {
                w.WriteString("architecture", "aarch64");
                w.WriteString("tableBase", t.TableBase);
                w.WriteString("tcr", Hex.Of(space.Tcr));
                w.WriteString("root", Hex.Of(t.Root));
            },
            _ => { },
            $"AArch64 4 KiB granule, {bits}-bit VA, {t.TableBase} (TCR_EL1 {Hex.Of(space.Tcr)}), first table at {Hex.Of(t.Root)}",
            levels,
            $"{(t.Entries.Count > 0 && t.Entries[^1].IsBlock ? "block" : "page")}{(t.Writable ? ", writable" : ", read-only")}{(t.User ? ", EL0" : ", EL1 only")}");
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
