using System.Text;
using VmState.Arch.X86;
using VmState.IO;
using VmState.Machine;

namespace VmState.Linux;

/// <summary>
/// Finds a Linux x86-64 kernel in a machine with no profile (<c>profile-free-linux.md</c> §1, §2): the page-table
/// root from VMCOREINFO, else from a vCPU's CR3, else from the banner and kallsyms found in raw physical memory (one
/// strategy each, tried in that order); the image from the page directory over <c>__START_KERNEL_map</c>; kallsyms
/// from the VMCOREINFO addresses or a structural scan; and every candidate validated by reading "Linux version " at
/// <c>linux_banner</c>. What each strategy tried is kept as evidence, and is the message when none succeeds.
/// </summary>
public static class KernelLocator
{
    private static readonly byte[] s_bannerPrefix = "Linux version "u8.ToArray();

    /// <summary>"Linux version ", the start of <c>linux_banner</c> (<c>init/version.c</c>).</summary>
    internal static ReadOnlySpan<byte> BannerPrefix => s_bannerPrefix;

    /// <summary>Locates the kernel, recording each step in <see cref="LinuxKernel.Evidence"/>.</summary>
    /// <exception cref="KernelDataException">No source produced a kernel that validates; the message lists what each step found.</exception>
    public static LinuxKernel Locate(MachineState machine, KernelLocatorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        options ??= KernelLocatorOptions.Default;
        return LocateWith(machine, options, Strategies(options));
    }

    /// <summary>The strategies <paramref name="options"/> allow, in the order they are tried: VMCOREINFO, CR3, banner scan.</summary>
    internal static IReadOnlyList<IKernelLocationStrategy> Strategies(KernelLocatorOptions options)
    {
        var strategies = new List<IKernelLocationStrategy>();
        if (options.UseVmcoreinfo)
        {
            strategies.Add(new VmcoreinfoLocationStrategy());
        }

        if (options.UseCpuState)
        {
            strategies.Add(new ControlRegisterLocationStrategy());
        }

        if (options.UseBannerScan)
        {
            strategies.Add(new BannerScanLocationStrategy());
        }

        return strategies;
    }

    /// <summary>Tries <paramref name="strategies"/> in order, then applies the options' System.map and BTF overrides.</summary>
    /// <exception cref="KernelDataException">No strategy produced a kernel that validates.</exception>
    internal static LinuxKernel LocateWith(MachineState machine, KernelLocatorOptions options, IReadOnlyList<IKernelLocationStrategy> strategies)
    {
        LinuxKernel kernel = LocateInMemory(machine, options, strategies);
        KernelOverrides.Apply(kernel, options);
        return kernel;
    }

    /// <summary>
    /// The page-table root <paramref name="space"/> as a kernel: the image mapped over <c>__START_KERNEL_map</c>,
    /// kallsyms (from VMCOREINFO's table addresses when they agree, else a scan of the image), and
    /// <c>linux_banner</c>. Null, with the reason in the evidence, when any of them is missing.
    /// </summary>
    internal static LinuxKernel? TryRoot(KernelLocationContext context, AddressSpace space, string label, KernelLocationMethod method)
    {
        List<string> evidence = context.Evidence;
        Vmcoreinfo? info = context.Vmcoreinfo;
        KernelImageMap? image = KernelImageMap.Find(space, out string failure);
        if (image is null)
        {
            evidence.Add($"{label}: {failure}");
            return null;
        }

        ulong text = image.Start;
        ulong textPa = image.PhysicalOf(text)!.Value;
        long physBase = (long)textPa - (long)(text - KernelImageMap.StartKernelMap);
        evidence.Add($"{label}: kernel image mapped at 0x{text:x}..0x{image.End:x} ({image.MappedBytes >> 20} MiB in {image.Runs.Count} run{(image.Runs.Count == 1 ? string.Empty : "s")}); _text physical 0x{textPa:x}, phys_base {Signed(physBase)}, KASLR offset {Signed((long)(text - LinuxKernel.DefaultTextAddress))}");
        bool infoAgrees = true;
        if (info?.Symbol("_stext") is ulong stext && stext != text)
        {
            if (method == KernelLocationMethod.Vmcoreinfo)
            {
                evidence.Add($"{label}: VMCOREINFO SYMBOL(_stext)=0x{stext:x} differs from the first mapped address; rejected");
                return null;
            }

            // A note from another kernel (e.g. the one before a kexec): do not use its table addresses.
            evidence.Add($"{label}: VMCOREINFO SYMBOL(_stext)=0x{stext:x} disagrees with these page tables; ignoring its kallsyms addresses");
            infoAgrees = false;
        }

        Kallsyms? symbols = null;
        if (info is not null && infoAgrees)
        {
            try
            {
                symbols = Kallsyms.FromVmcoreinfo(space, info, "_text", text);
                if (symbols is null)
                {
                    evidence.Add("VMCOREINFO has no kallsyms table addresses (a kernel before 6.0): scanning the image instead");
                }
            }
            catch (KernelDataException e)
            {
                evidence.Add($"kallsyms from VMCOREINFO addresses failed: {e.Message}; scanning the image instead");
            }
        }

        byte[]? bytes = null;
        if (symbols is null)
        {
            bytes = image.Read(space.Memory);
            try
            {
                symbols = Kallsyms.Scan(bytes, text, imageIsVirtual: true, "_text", text);
            }
            catch (KernelDataException e)
            {
                evidence.Add($"{label}: {e.Message}");
                return null;
            }
        }

        KallsymsLayout l = symbols.Layout;
        evidence.Add($"kallsyms: {symbols.Count} symbols ({l.Source}; {l.Encoding} addresses, {l.Order} table order, {(l.BigLengths ? "1-2 byte" : "1-byte")} name lengths{(l.SeqsOfNames is not null ? ", with kallsyms_seqs_of_names" : string.Empty)}); kallsyms_names at 0x{l.Names:x}, kallsyms_token_table at 0x{l.TokenTable:x}");
        if (!Validate(space, symbols, bytes, text, out string banner, out ulong bannerAddress, out string why))
        {
            evidence.Add($"{label}: {why}; rejected");
            return null;
        }

        return Accept(context, space, text, image.End, symbols, banner, bannerAddress, method);
    }

    /// <summary>linux_banner must translate and read "Linux version "; without the symbol, look for the string in the image.</summary>
    internal static bool Validate(AddressSpace space, Kallsyms symbols, byte[]? image, ulong text, out string banner, out ulong address, out string why)
    {
        banner = string.Empty;
        address = 0;
        if (symbols.TryGetAddress("linux_banner", out ulong at))
        {
            address = at;
            byte[] buf = new byte[1024];
            int n = space.Read(at, buf);
            if (n < s_bannerPrefix.Length || !buf.AsSpan().StartsWith(s_bannerPrefix))
            {
                why = n == 0 ? $"linux_banner 0x{at:x} does not translate" : $"linux_banner 0x{at:x} does not read \"Linux version \"";
                return false;
            }

            banner = BannerText(buf.AsSpan(0, n));
            why = string.Empty;
            return true;
        }

        // Kernels without CONFIG_KALLSYMS_ALL have no data symbols: find the banner in the image itself.
        image ??= KernelImageMap.Find(space, out _)?.Read(space.Memory) ?? [];
        int i = image.AsSpan().IndexOf(s_bannerPrefix);
        if (i < 0)
        {
            why = "kallsyms has no linux_banner and the image holds no \"Linux version \" string";
            return false;
        }

        address = text + (ulong)i;
        banner = BannerText(image.AsSpan(i, Math.Min(1024, image.Length - i)));
        why = string.Empty;
        return true;
    }

    /// <summary>The validated candidate as the kernel: the last piece of evidence, and the direct-map fast path enabled.</summary>
    internal static LinuxKernel Accept(KernelLocationContext context, AddressSpace space, ulong text, ulong imageEnd, Kallsyms symbols, string banner, ulong bannerAddress, KernelLocationMethod method)
    {
        context.Evidence.Add($"validated: linux_banner at 0x{bannerAddress:x} reads \"{Shorten(banner)}\"");
        var kernel = new LinuxKernel(context.Machine, space, text, imageEnd, symbols, banner, bannerAddress, context.Vmcoreinfo, context.VmcoreinfoSource, method, context.Evidence);

        // Reading page_offset_base once enables the direct-map fast path for every later read.
        try
        {
            _ = kernel.PageOffsetBase;
        }
        catch (KernelDataException)
        {
            // Reads then always walk the page tables; nothing else depends on it.
        }

        return kernel;
    }

    /// <summary>An AArch64 kernel validated by its banner, as the kernel (the layout from VMCOREINFO, the image found below _stext).</summary>
    internal static LinuxKernel AcceptArm64(KernelLocationContext context, Arm64KernelLayout layout, Arch.Arm64.Arm64AddressSpace space, IKernelMemoryModel memory, ulong text, ulong imageEnd, Kallsyms symbols, string banner, ulong bannerAddress)
    {
        context.Evidence.Add($"validated: \"Linux version \" at 0x{bannerAddress:x} reads \"{Shorten(banner)}\"");
        return new LinuxKernel(context.Machine, layout, space, memory, text, imageEnd, symbols, banner, bannerAddress, context.Vmcoreinfo!, context.VmcoreinfoSource, context.Evidence);
    }

    /// <summary>A signed offset as evidence prints it: <c>-0x1e00000</c>, <c>0x200000</c>.</summary>
    internal static string Signed(long v) => v < 0 ? $"-0x{(ulong)-v:x}" : $"0x{v:x}";

    private static LinuxKernel LocateInMemory(MachineState machine, KernelLocatorOptions options, IReadOnlyList<IKernelLocationStrategy> strategies)
    {
        IKernelLocationNotes notes = IKernelLocationNotes.For(machine);
        string? noteKind = machine.Notes is null ? null : notes.Kind(options);
        if (noteKind is not null && machine.Notes!.Read(noteKind) is byte[] note && notes.FromNote(machine, note) is LinuxKernel known)
        {
            return known;
        }

        LinuxKernel kernel = Search(machine, options, strategies);
        if (noteKind is not null && notes.Encode(kernel) is byte[] encoded)
        {
            machine.Notes!.Write(noteKind, encoded);
        }

        return kernel;
    }

    /// <summary>
    /// The kernel where a note from an earlier run says it is, validated as a fresh search validates it (image,
    /// kallsyms, <c>linux_banner</c>), with that search's evidence; null when the note does not decode or does not
    /// validate (the caller then searches).
    /// </summary>
    internal static LinuxKernel? FromNote(MachineState machine, ReadOnlySpan<byte> bytes)
    {
        KernelLocationNote note;
        Vmcoreinfo? info;
        try
        {
            note = KernelLocationNote.Decode(bytes);
            info = note.VmcoreinfoText is string text ? Vmcoreinfo.Parse(text) : null;
        }
        catch (VmStateFormatException)
        {
            return null;
        }

        var context = new KernelLocationContext(machine, info, note.VmcoreinfoSource, []);
        var space = new AddressSpace(machine.Memory, note.Mode, note.Cr3);
        LinuxKernel? kernel = TryRoot(context, space, "noted location", note.Method);
        kernel?.RestoreEvidence(note.Evidence);
        return kernel;
    }

    private static LinuxKernel Search(MachineState machine, KernelLocatorOptions options, IReadOnlyList<IKernelLocationStrategy> strategies)
    {
        var evidence = new List<string>();
        Vmcoreinfo? info = null;
        string? infoSource = null;
        if (options.UseVmcoreinfo)
        {
            if (VmcoreinfoLocator.Find(machine, scan: true) is (byte[] note, string how))
            {
                info = Vmcoreinfo.FromNote(note);
                infoSource = how;
                evidence.Add($"VMCOREINFO found ({how}): OSRELEASE={info.OsRelease}, KERNELOFFSET={Hex(info.KernelOffset)}, phys_base={info.PhysBase?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"}, pgtable_l5_enabled={(info.FiveLevelPaging is bool l5 ? l5 ? "1" : "0" : "-")}");
            }
            else
            {
                evidence.Add("VMCOREINFO: none in the input, none from a vmcoreinfo device, none found by scanning RAM");
            }
        }

        if (machine.Architecture == Arch.CpuArchitecture.Arm64)
        {
            if (info is null || Arm64KernelLayout.FromVmcoreinfo(info) is null)
            {
                throw new KernelDataException("Linux kernel", Arm64Evidence(info));
            }

            return Arm64KernelLocator.Locate(machine, info, infoSource ?? "VMCOREINFO", evidence);
        }

        var context = new KernelLocationContext(machine, info, infoSource, evidence);
        foreach (IKernelLocationStrategy strategy in strategies)
        {
            if (strategy.TryLocate(context) is LinuxKernel kernel)
            {
                return kernel;
            }
        }

        throw new KernelDataException("Linux kernel", "not found. " + string.Join(" | ", evidence));
    }

    /// <summary>Why an AArch64 guest's kernel cannot be located: no VMCOREINFO, or one without the arm64 values.</summary>
    private static string Arm64Evidence(Vmcoreinfo? info)
    {
        const string Missing = "not found in the AArch64 guest (its views start from the VMCOREINFO note the kernel keeps in RAM)";
        return info is null
            ? $"{Missing}; no VMCOREINFO found"
            : $"{Missing}; VMCOREINFO (OSRELEASE={info.OsRelease}) lacks the arm64 values (kimage_voffset, PHYS_OFFSET, VA_BITS, swapper_pg_dir)";
    }

    private static string Hex(ulong? v) => v is ulong x ? $"0x{x:x}" : "-";

    private static string Shorten(string s) => s.Length <= 100 ? s : s[..97] + "...";

    private static string BannerText(ReadOnlySpan<byte> s)
    {
        int nul = s.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul >= 0 ? s[..nul] : s).TrimEnd('\n');
    }
}
