using System.Buffers.Binary;
using System.Text;
using VmState.Arch.Arm64;
using VmState.Linux.Btf;
using VmState.Machine;

namespace VmState.Linux;

/// <summary>
/// Finds an AArch64 Linux kernel with no profile, from the VMCOREINFO it keeps in RAM (<see cref="Arm64KernelLayout"/>):
/// the image (from KIMAGE_VADDR + KERNELOFFSET to past the last VMCOREINFO symbol in it), read as one physically
/// contiguous run at <c>va − kimage_voffset</c>; kallsyms from VMCOREINFO's table addresses, else a structural scan
/// of the image (text symbols only on Debian, whose arm64 kernel has CONFIG_KALLSYMS_ALL off); the banner and the vmlinux BTF (the .BTF section's header) found in the
/// image; and the data symbols the views need added from VMCOREINFO's SYMBOL() entries and from the tasks:
/// <c>init_task</c> is where the real_parent chain of the task a vCPU at EL1 runs (SP_EL0) ends, and
/// <c>init_nsproxy</c>, <c>init_net</c>, <c>init_pid_ns</c>, <c>init_mm</c> are read from it.
/// </summary>
internal static class Arm64KernelLocator
{
    private const ulong MaxImageSize = 128 << 20;

    /// <summary>The kernel VMCOREINFO describes, or an exception saying which step failed.</summary>
    /// <exception cref="KernelDataException">A value or structure the bootstrap needs is missing.</exception>
    public static LinuxKernel Locate(MachineState machine, Vmcoreinfo info, string infoSource, List<string> evidence) =>
        Build(machine, info, infoSource, evidence, noted: null)!;

    /// <summary>
    /// The kernel where a note from an earlier run on the same file says its pieces are: the same bootstrap from the
    /// noted VMCOREINFO, but the banner and the BTF read at their noted offsets and the <c>modules</c> head taken from
    /// the note, each checked; the search's evidence restored. Null when the note does not decode or a piece does not
    /// check (the caller then searches).
    /// </summary>
    internal static LinuxKernel? FromNote(MachineState machine, ReadOnlySpan<byte> bytes)
    {
        try
        {
            Arm64KernelLocationNote note = Arm64KernelLocationNote.Decode(bytes);
            Vmcoreinfo info = Vmcoreinfo.Parse(note.VmcoreinfoText);
            return Build(machine, info, note.VmcoreinfoSource ?? "VMCOREINFO", [], note);
        }
        catch (Exception e) when (e is KernelDataException or IO.VmStateFormatException or VmStateNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// The bootstrap: with no note, the image read and searched; with one, its pieces read where it says (null when
    /// one of them does not check).
    /// </summary>
    private static LinuxKernel? Build(MachineState machine, Vmcoreinfo info, string infoSource, List<string> evidence, Arm64KernelLocationNote? noted)
    {
        Arm64KernelLayout layout = Arm64KernelLayout.FromVmcoreinfo(info)
            ?? throw new KernelDataException("Linux kernel", $"AArch64 guest: VMCOREINFO (OSRELEASE={info.OsRelease}) lacks the arm64 values (kimage_voffset, PHYS_OFFSET, VA_BITS, swapper_pg_dir). {string.Join(" | ", evidence)}");
        evidence.Add($"AArch64 layout from VMCOREINFO: {layout.Describe()}");
        if (machine.Arm64Cpus.Count == 0)
        {
            throw new KernelDataException("Linux kernel", "AArch64 VMCOREINFO in a machine with no AArch64 vCPU state");
        }

        if (machine.Arm64Cpus[0].SystemRegister(Arm64SystemRegisters.TcrEl1) is null)
        {
            throw new KernelDataException("Linux kernel", "AArch64 guest: vCPU 0's TCR_EL1 is not known (a running VM's system registers are read through QEMU's gdbstub), so the kernel's page tables cannot be walked");
        }

        Arm64AddressSpace space = layout.KernelAddressSpace(machine, machine.Arm64Cpus[0]);
        if (info.Symbol("_stext") is not ulong stext)
        {
            throw new KernelDataException("Linux kernel", "AArch64 guest: VMCOREINFO has no SYMBOL(_stext) to find the image by");
        }

        (ulong text, ulong size) = FindImage(machine, layout, info, stext);
        ulong textPa = layout.ImageToPhysical(text);
        byte[]? image = noted is null ? ReadImage(machine, text, textPa, size) : null;
        evidence.Add($"kernel image: 0x{text:x} (physical 0x{textPa:x}), {size >> 20} MiB read as one physical run, KASLR offset {KernelLocator.Signed((long)(layout.KernelOffset ?? 0))}");
        var memory = new Arm64KernelMemory(machine, layout, space, text, text + size);
        Kallsyms symbols = Kallsyms.FromVmcoreinfo(memory.Read, (address, length) => ZeroFilled(memory, address, length), info, "_stext", stext)
            ?? Kallsyms.Scan(image ??= ReadImage(machine, text, textPa, size), text, imageIsVirtual: true, "_stext", stext);
        KallsymsLayout l = symbols.Layout;
        evidence.Add($"kallsyms: {symbols.Count} symbols ({l.Source}; {l.Encoding} addresses, {l.Order} table order); kallsyms_names at 0x{l.Names:x}");

        int b;
        string banner;
        if (noted is null)
        {
            (b, banner) = FindBanner(image!, UtsVersion(memory, layout, info));
        }
        else if (noted.BannerOffset < size && NotedBanner(machine, textPa + noted.BannerOffset, (int)Math.Min(1024, size - noted.BannerOffset)) == noted.Banner)
        {
            (b, banner) = ((int)noted.BannerOffset, noted.Banner);
        }
        else
        {
            return null;
        }

        // The banner found is linux_banner[] (init/version.c), a data symbol this kallsyms lacks: `read --sym linux_banner`.
        var extra = new List<(string Name, char Type, ulong Address)>();
        if (!symbols.TryGetAddress("linux_banner", out _))
        {
            extra.Add(("linux_banner", 'R', text + (ulong)b));
        }

        (int Offset, int Size)? btf;
        if (noted is null)
        {
            btf = FindBtf(image!);
        }
        else if (noted.BtfSize == 0)
        {
            btf = null;
        }
        else if ((ulong)noted.BtfOffset + noted.BtfSize <= size && NotedBtfSize(machine, textPa + noted.BtfOffset) == noted.BtfSize)
        {
            btf = ((int)noted.BtfOffset, (int)noted.BtfSize);
        }
        else
        {
            return null;
        }

        if (btf is (int btfAt, int btfSize))
        {
            extra.Add(("__start_BTF", 'R', text + (ulong)btfAt));
            extra.Add(("__stop_BTF", 'R', text + (ulong)btfAt + (ulong)btfSize));
            evidence.Add($"BTF: .BTF header in the image at 0x{text + (ulong)btfAt:x}, {btfSize} bytes");
        }
        else
        {
            evidence.Add("BTF: no .BTF header found in the image");
        }

        foreach (string name in VmcoreinfoSymbols)
        {
            if (info.Symbol(name) is ulong v && !symbols.TryGetAddress(name, out _))
            {
                extra.Add((name, 'D', v));
            }
        }

        var context = new KernelLocationContext(machine, info, infoSource, evidence);
        LinuxKernel kernel = KernelLocator.AcceptArm64(context, layout, space, memory, text, text + size, symbols.WithSymbols(extra, "data symbols from VMCOREINFO and BTF"), banner, text + (ulong)b);
        AddTaskSymbols(kernel, memory);
        if (noted is null || noted.Modules == 0 || kernel.Symbols.TryGetAddress("modules", out _))
        {
            AddModulesSymbol(kernel, info);
        }
        else if (IsListHead(kernel, noted.Modules))
        {
            kernel.AddSymbols(kernel.Symbols.WithSymbols([("modules", 'D', noted.Modules)], "modules from a module's list"), $"modules at 0x{noted.Modules:x} (noted)");
        }
        else
        {
            return null;
        }

        if (noted is not null)
        {
            kernel.RestoreEvidence(noted.Evidence);
        }

        return kernel;
    }

    private static byte[] ReadImage(MachineState machine, ulong text, ulong textPa, ulong size)
    {
        byte[] image = new byte[size];
        int got = machine.Memory.Read(textPa, image);
        if (got != image.Length)
        {
            throw new KernelDataException(text, "AArch64 kernel image", $"only {got} of {size} bytes are in RAM at physical 0x{textPa:x}");
        }

        return image;
    }

    /// <summary>The NUL-terminated text at a noted banner's physical address, or null when it is not a banner.</summary>
    private static string? NotedBanner(MachineState machine, ulong pa, int length)
    {
        byte[] buf = new byte[length];
        int n = machine.Memory.Read(pa, buf);
        ReadOnlySpan<byte> s = buf.AsSpan(0, n);
        if (!s.StartsWith(KernelLocator.BannerPrefix))
        {
            return null;
        }

        int nul = s.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul >= 0 ? s[..nul] : s).TrimEnd('\n');
    }

    /// <summary>The size a BTF header at a noted physical address gives (header, types and strings), or 0 when none is there.</summary>
    private static ulong NotedBtfSize(MachineState machine, ulong pa)
    {
        byte[] h = new byte[24];
        if (machine.Memory.Read(pa, h) != h.Length || !h.AsSpan(0, 8).SequenceEqual(BtfMagic))
        {
            return 0;
        }

        ulong typeEnd = (ulong)BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(8)) + BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(12));
        ulong strEnd = (ulong)BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(16)) + BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(20));
        return 24 + Math.Max(typeEnd, strEnd);
    }

    /// <summary>Whether <paramref name="head"/> is a list head in the image whose neighbours point back at it.</summary>
    private static bool IsListHead(LinuxKernel kernel, ulong head) =>
        head >= kernel.TextAddress && head < kernel.ImageEnd
        && kernel.TryReadU64(head, out ulong next) && kernel.TryReadU64(head + 8, out ulong prev)
        && kernel.TryReadU64(next + 8, out ulong back) && back == head
        && kernel.TryReadU64(prev, out ulong forward) && forward == head;

    private static ReadOnlySpan<byte> BtfMagic => [0x9F, 0xEB, 0x01, 0x00, 0x18, 0x00, 0x00, 0x00];

    /// <summary>
    /// The <c>modules</c> list head, a data symbol: a <c>struct module</c> is found by its shape (a state of 0..3, a
    /// list whose neighbours point back at it, a printable name) in a vmalloc area (vmap_area_list, from VMCOREINFO)
    /// of the module region or within 2 GiB of the image, where KASLR puts modules; the head is the node of its ring
    /// that lies in the kernel image.
    /// </summary>
    private static void AddModulesSymbol(LinuxKernel kernel, Vmcoreinfo info)
    {
        if (kernel.Symbols.TryGetAddress("modules", out _) || !kernel.Symbols.TryGetAddress("vmap_area_list", out _)
            || Value(info, "NUMBER(MODULES_VADDR)") is not ulong lo || Value(info, "NUMBER(MODULES_END)") is not ulong hi)
        {
            return;
        }

        try
        {
            int moduleType = kernel.Types.FindType("struct module");
            int listOff = (int)(kernel.Types.FindMember(moduleType, "list")?.BitOffset / 8 ?? throw new KernelDataException("struct module", "no member list"));
            int nameOff = (int)(kernel.Types.FindMember(moduleType, "name")?.BitOffset / 8 ?? throw new KernelDataException("struct module", "no member name"));
            int size = (int)kernel.Types.SizeOf(moduleType);
            KernelObject head = kernel.Object("vmap_area_list", "struct list_head");
            foreach (KernelObject area in kernel.ListForEachEntry(head, "struct vmap_area", "list"))
            {
                ulong start = area.Member("va_start").ToUInt64(), end = area.Member("va_end").ToUInt64();
                // Modules are in [MODULES_VADDR, MODULES_END), or with KASLR within 2 GiB of the image (arm64 module_alloc_base).
                bool nearImage = start < kernel.TextAddress ? kernel.TextAddress - start <= (2UL << 30) : start >= kernel.ImageEnd && start - kernel.ImageEnd <= (2UL << 30);
                if ((start < lo || start >= hi) && !nearImage)
                {
                    continue;
                }

                if (end <= start || end - start > (16 << 20))
                {
                    continue;
                }

                byte[] bytes = new byte[end - start];
                int got = kernel.Read(start, bytes);
                for (int at = 0; at + size <= got; at += 8)
                {
                    if (LooksLikeModule(kernel, bytes.AsSpan(at, size), start + (ulong)at, listOff, nameOff) is ulong modules)
                    {
                        kernel.AddSymbols(kernel.Symbols.WithSymbols([("modules", 'D', modules)], "modules from a module's list"), $"modules at 0x{modules:x}: the image node of the list ring of the struct module at 0x{start + (ulong)at:x} (found in the module area 0x{start:x}..0x{end:x} of vmap_area_list)");
                        return;
                    }
                }
            }

            kernel.AddEvidence("modules: no struct module found in the vmalloc areas of the module region or near the image (no modules loaded?)");
        }
        catch (Exception e) when (e is KernelDataException or IO.VmStateFormatException or VmStateNotFoundException)
        {
            kernel.AddEvidence($"modules: not found ({e.Message})");
        }
    }

    /// <summary>The address of the <c>modules</c> head when <paramref name="m"/> (at <paramref name="address"/>) is a listed struct module.</summary>
    private static ulong? LooksLikeModule(LinuxKernel kernel, ReadOnlySpan<byte> m, ulong address, int listOff, int nameOff)
    {
        if (BinaryPrimitives.ReadUInt32LittleEndian(m) > 3)
        {
            return null;
        }

        ulong next = BinaryPrimitives.ReadUInt64LittleEndian(m[listOff..]);
        ulong prev = BinaryPrimitives.ReadUInt64LittleEndian(m[(listOff + 8)..]);
        if (next < kernel.PageOffsetBase || prev < kernel.PageOffsetBase)
        {
            return null;
        }

        ReadOnlySpan<byte> name = m.Slice(nameOff, 56);
        int nul = name.IndexOf((byte)0);
        if (nul <= 0)
        {
            return null;
        }

        foreach (byte c in name[..nul])
        {
            if (!(c is (>= (byte)'a' and <= (byte)'z') or (>= (byte)'0' and <= (byte)'9') or (byte)'_' or (byte)'-' or (>= (byte)'A' and <= (byte)'Z')))
            {
                return null;
            }
        }

        ulong self = address + (ulong)listOff;
        if (!kernel.TryReadU64(next + 8, out ulong back) || back != self || !kernel.TryReadU64(prev, out ulong forward) || forward != self)
        {
            return null;
        }

        // Around the ring to the node in the kernel image: the head.
        ulong node = next;
        for (int i = 0; i < 4096 && node != self; i++)
        {
            if (node >= kernel.TextAddress && node < kernel.ImageEnd)
            {
                return node;
            }

            if (!kernel.TryReadU64(node, out node))
            {
                return null;
            }
        }

        return null;
    }

    /// <summary>The VMCOREINFO SYMBOL() entries the views use when kallsyms lacks them.</summary>
    private static readonly string[] VmcoreinfoSymbols = ["init_uts_ns", "swapper_pg_dir", "vmap_area_list", "prb", "printk_rb_static", "printk_rb_dynamic", "clear_seq", "mem_map", "mem_section", "vmemmap", "node_online_map", "_stext"];

    /// <summary>
    /// The image's extent: from <c>_text</c> (KIMAGE_VADDR, which is NUMBER(MODULES_END) on 6.1, plus KERNELOFFSET;
    /// else _stext) to 2 MiB past the highest VMCOREINFO SYMBOL() in the image (its .data and .bss), cut where RAM ends.
    /// The Image header itself is not kept in RAM after boot, so its image_size cannot be read.
    /// </summary>
    private static (ulong Text, ulong Size) FindImage(MachineState machine, Arm64KernelLayout layout, Vmcoreinfo info, ulong stext)
    {
        ulong text = stext;
        if (Value(info, "NUMBER(MODULES_END)") is ulong kimage && layout.KernelOffset is ulong offset && kimage + offset <= stext && stext - (kimage + offset) < (2 << 20))
        {
            text = kimage + offset;
        }

        ulong end = stext;
        foreach (string line in info.Text.Split('\n'))
        {
            if (line.StartsWith("SYMBOL(", StringComparison.Ordinal) && info.Symbol(line[7..line.IndexOf(')', StringComparison.Ordinal)]) is ulong v && v >= text && v - text < MaxImageSize)
            {
                end = Math.Max(end, v);
            }
        }

        ulong size = Math.Min(MaxImageSize, ((end - text) + (4UL << 20)) & ~0x1FFFFFUL);
        ulong pa = layout.ImageToPhysical(text);
        ulong inRam = 0;
        foreach (Memory.MemoryRange r in machine.Memory.Ranges)
        {
            if (pa >= r.Start && pa < r.End)
            {
                inRam = r.End - pa;
            }
        }

        if (inRam == 0)
        {
            throw new KernelDataException(text, "AArch64 kernel image", $"its physical address 0x{pa:x} is not in RAM");
        }

        return (text, Math.Min(size, inRam));
    }

    /// <summary>
    /// The banner: the image's "Linux version " string that ends with init_uts_ns's version (6.1's init/version.c
    /// keeps a weak linux_banner whose UTS_VERSION lacks the build number, before the real one), else the first.
    /// </summary>
    private static (int Offset, string Text) FindBanner(byte[] image, string? version)
    {
        (int, string)? first = null;
        for (int from = 0, n = 0; from < image.Length && n < 16; n++)
        {
            int i = image.AsSpan(from).IndexOf(KernelLocator.BannerPrefix);
            if (i < 0)
            {
                break;
            }

            int at = from + i;
            ReadOnlySpan<byte> bytes = image.AsSpan(at, Math.Min(1024, image.Length - at));
            int nul = bytes.IndexOf((byte)0);
            string text = Encoding.UTF8.GetString(nul >= 0 ? bytes[..nul] : bytes).TrimEnd('\n');
            if (version is not null && text.EndsWith(" " + version, StringComparison.Ordinal))
            {
                return (at, text);
            }

            first ??= (at, text);
            from = at + KernelLocator.BannerPrefix.Length;
        }

        return first ?? throw new KernelDataException("Linux kernel", "AArch64 image holds no \"Linux version \" string");
    }

    /// <summary>init_uts_ns.name.version (struct new_utsname: sysname, nodename, release, version; 65 bytes each).</summary>
    private static string? UtsVersion(Arm64KernelMemory memory, Arm64KernelLayout layout, Vmcoreinfo info)
    {
        if (layout.InitUtsNs is not ulong uts)
        {
            return null;
        }

        byte[] version = new byte[65];
        if (memory.Read(uts + (ulong)(info.Offset("uts_namespace.name") ?? 0) + (65 * 3), version) != version.Length)
        {
            return null;
        }

        int nul = Array.IndexOf(version, (byte)0);
        return nul <= 0 ? null : Encoding.ASCII.GetString(version, 0, nul);
    }

    private static byte[] ZeroFilled(Arm64KernelMemory memory, ulong address, int length)
    {
        byte[] buf = new byte[length];
        for (int done = 0; done < length;)
        {
            int n = (int)Math.Min((ulong)(length - done), 0x1000 - ((address + (ulong)done) & 0xFFF));
            memory.Read(address + (ulong)done, buf.AsSpan(done, n));
            done += n;
        }

        return buf;
    }

    private static ulong? Value(Vmcoreinfo info, string key) =>
        info.Get(key) is string s && s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
        && ulong.TryParse(s.AsSpan(2), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture, out ulong v) ? v : null;

    /// <summary>
    /// The vmlinux BTF in the image: a header (magic 0xeB9F, version 1, hdr_len 24) whose type and string sections
    /// fit, and which parses; the first such.
    /// </summary>
    internal static (int Offset, int Size)? FindBtf(ReadOnlySpan<byte> image)
    {
        ReadOnlySpan<byte> magic = BtfMagic;
        int from = 0;
        while (from < image.Length)
        {
            int i = image[from..].IndexOf(magic);
            if (i < 0)
            {
                return null;
            }

            int at = from + i;
            from = at + 4;
            if (image.Length - at < 24)
            {
                return null;
            }

            ReadOnlySpan<byte> h = image.Slice(at, 24);
            ulong typeOff = BinaryPrimitives.ReadUInt32LittleEndian(h[8..]);
            ulong typeLen = BinaryPrimitives.ReadUInt32LittleEndian(h[12..]);
            ulong strOff = BinaryPrimitives.ReadUInt32LittleEndian(h[16..]);
            ulong strLen = BinaryPrimitives.ReadUInt32LittleEndian(h[20..]);
            ulong size = 24 + Math.Max(typeOff + typeLen, strOff + strLen);
            if (typeLen == 0 || strLen == 0 || size > (ulong)(image.Length - at))
            {
                continue;
            }

            try
            {
                BtfTypes types = BtfTypes.Parse(image.Slice(at, (int)size).ToArray());
                if (types.Find("task_struct", BtfKind.Struct) != 0)
                {
                    return (at, (int)size);
                }
            }
            catch (IO.VmStateFormatException)
            {
                // Not a BTF blob after all: keep looking.
            }
        }

        return null;
    }

    /// <summary>init_task and the globals read from it, added to the kernel's symbols.</summary>
    private static void AddTaskSymbols(LinuxKernel kernel, Arm64KernelMemory memory)
    {
        int cpus = kernel.Machine.Arm64Cpus.Count;
        string why = "no vCPU is at EL1 (SP_EL0 holds a user stack pointer at EL0)";
        for (int cpu = 0; cpu < cpus; cpu++)
        {
            if (memory.CurrentTask(cpu) is not ulong current)
            {
                continue;
            }

            try
            {
                KernelObject task = kernel.ObjectAt(current, "struct task_struct");
                for (int depth = 0; depth < 64; depth++)
                {
                    KernelObject parent = task.Member("real_parent");
                    if (parent.ToUInt64() == task.Address)
                    {
                        break;
                    }

                    task = parent.Deref();
                }

                if (task.Member("real_parent").ToUInt64() != task.Address || task.Member("pid").ToInt64() != 0)
                {
                    why = $"cpu{cpu}: the real_parent chain from SP_EL0 0x{current:x} does not end in a pid-0 task that is its own parent";
                    continue;
                }

                ulong init = task.Address;
                KernelObject nsproxy = task.Member("nsproxy");
                var found = new List<(string, char, ulong)> { ("init_task", 'D', init), ("init_mm", 'D', task.Member("active_mm").ToUInt64()) };
                if (!nsproxy.IsNull)
                {
                    found.Add(("init_nsproxy", 'D', nsproxy.ToUInt64()));
                    found.Add(("init_net", 'D', nsproxy.Member("net_ns").ToUInt64()));
                    found.Add(("init_pid_ns", 'D', nsproxy.Member("pid_ns_for_children").ToUInt64()));
                }

                kernel.AddSymbols(kernel.Symbols.WithSymbols(found, "init_task from SP_EL0"), $"init_task at 0x{init:x}: the end of the real_parent chain from cpu{cpu}'s SP_EL0 0x{current:x}; init_nsproxy, init_net, init_pid_ns, init_mm read from it");
                return;
            }
            catch (Exception e) when (e is KernelDataException or IO.VmStateFormatException or VmStateNotFoundException)
            {
                why = $"cpu{cpu}: SP_EL0 0x{current:x} is not a readable task ({e.Message})";
            }
        }

        kernel.AddEvidence($"init_task not found: {why}; the task views need it");
    }
}
