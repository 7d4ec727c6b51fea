using System.Globalization;
using System.Text;
using VmState.Arch.X86;

namespace VmState.Linux;

/// <summary>
/// A located kernel described for a reader: where it is, how it was found (the evidence), its uname, command line,
/// CPUs, kallsyms and BTF; the text of <c>vmstate kernel-info</c>.
/// </summary>
public static class KernelInfoText
{
    /// <summary>The text <c>vmstate kernel-info</c> prints (and the filesystem view's <c>linux/kernel-info</c>).</summary>
    public static string Format(LinuxKernel k, KernelSummary s)
    {
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(s);
        var sb = new StringBuilder();
        void Row(string name, string value) => sb.Append(CultureInfo.InvariantCulture, $"  {name,-18}{value}\n");
        sb.Append(CultureInfo.InvariantCulture, $"Linux {k.Release}\n");
        Row("banner", k.Banner);
        Row("found via", k.Method switch
        {
            KernelLocationMethod.Vmcoreinfo => $"VMCOREINFO ({k.VmcoreinfoSource})",
            KernelLocationMethod.ControlRegister => "vCPU CR3",
            _ => "banner + kallsyms in physical memory (no CPU state)",
        });
        if (k.Arm64Layout is Arm64KernelLayout a)
        {
            Row("paging", $"AArch64 {a.VaBits}-bit kernel VA, swapper_pg_dir {Hex(a.SwapperPgDir)} at physical {Hex(k.PageTableRoot)}");
            Row("_text", $"{Hex(k.TextAddress)} (physical {Hex(k.TextPhysicalAddress)}), image to {Hex(k.ImageEnd)}");
            Row("KASLR offset", Signed(k.KaslrOffset));
            Row("linear map", $"PAGE_OFFSET {Hex(a.PageOffset)}, PHYS_OFFSET {Hex(a.PhysOffset)}, kimage_voffset {Hex(a.KimageVoffset)}{(a.KernelPacMask is ulong pac ? $", KERNELPACMASK {Hex(pac)}" : string.Empty)}");
        }
        else
        {
            Row("paging", $"{(k.Paging == PagingMode.Level5 ? 5 : 4)}-level, kernel page-table root at physical {Hex(k.PageTableRoot)}");
            Row("_text", $"{Hex(k.TextAddress)} (physical {Hex(k.TextPhysicalAddress)}), image mapped to {Hex(k.ImageEnd)}");
            Row("KASLR offset", Signed(k.KaslrOffset));
            Row("phys_base", Signed(k.PhysBase));
        }
        if (s.PageOffsetBase is ulong pob)
        {
            Row("direct map", $"page_offset_base {Hex(pob)}, vmalloc_base {Opt(s.VmallocBase)}, vmemmap_base {Opt(s.VmemmapBase)}");
        }

        if (s.Hostname is not null)
        {
            Row("uname", $"{s.Hostname} {s.Version} {s.Machine}");
        }

        if (s.CommandLine is not null)
        {
            Row("command line", s.CommandLine);
        }

        Row("CPUs", $"{s.Cpus.Count} (nr_cpu_ids)");
        foreach ((int cpu, ulong? offset, int? pid, string? comm) in s.Cpus)
        {
            Row(string.Empty, $"cpu{cpu}: {(k.Arm64Layout is null ? "__per_cpu_offset" : "TPIDR_EL1")} {Opt(offset)}, current {(pid is int p ? $"pid {p} ({comm})" : "-")}");
        }

        KallsymsLayout l = k.Symbols.Layout;
        Row("kallsyms", $"{k.Symbols.Count} symbols from {l.Source}: {l.Encoding} addresses, {l.Order} table order{(l.SeqsOfNames is not null ? ", kallsyms_seqs_of_names" : string.Empty)}");
        Row(string.Empty, $"kallsyms_names {Hex(l.Names)}, kallsyms_token_table {Hex(l.TokenTable)}, address table {Hex(l.AddressTable)}{(l.RelativeBase is ulong rb ? $", relative base {Hex(rb)}" : string.Empty)}");
        Row("BTF", s.BtfTypes is int n ? $"{n} types in {s.BtfBytes} bytes at {Hex(k.Symbols.AddressOf("__start_BTF"))}" : $"unavailable: {s.BtfProblem}");
        sb.Append("how it was found:\n");
        for (int i = 0; i < k.Evidence.Count; i++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"  {i + 1}. {k.Evidence[i]}\n");
        }

        return sb.ToString();
    }

    private static string Signed(long v) => v < 0 ? $"-0x{-v:x}" : $"0x{v:x}";

    private static string Opt(ulong? v) => v is ulong x ? Hex(x) : "-";

    private static string Hex(ulong v) => "0x" + v.ToString("x", CultureInfo.InvariantCulture);
}
