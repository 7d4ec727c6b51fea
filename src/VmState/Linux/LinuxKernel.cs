using System.Buffers.Binary;
using System.Text;
using VmState.Arch.Arm64;
using VmState.Arch.X86;
using VmState.Linux.Btf;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Linux;

/// <summary>
/// A Linux x86-64 guest kernel found in a machine's memory with no profile: where the image is (KASLR), its page
/// tables, its symbols (kallsyms) and, on first use, its types (BTF from <c>__start_BTF</c>..<c>__stop_BTF</c>).
/// Reads kernel virtual memory and makes typed <see cref="KernelObject"/>s in the spirit of drgn. Created by
/// <see cref="KernelLocator.Locate"/>, which also records how each fact was established in <see cref="Evidence"/>.
/// </summary>
public sealed class LinuxKernel
{
    /// <summary>The link address of <c>_text</c> with the default CONFIG_PHYSICAL_START (16 MiB): __START_KERNEL.</summary>
    public const ulong DefaultTextAddress = 0xffff_ffff_8100_0000UL;

    private const int MaxBtfSize = 256 << 20;

    /// <summary>
    /// Types of well-known globals, which BTF does not carry (vmlinux BTF has VARs only for per-CPU variables): the
    /// same small declaration table drgn's <c>drgn/helpers/experimental/btf.py</c> registers.
    /// </summary>
    private static readonly Dictionary<string, string> s_declarations = new(StringComparer.Ordinal)
    {
        ["init_task"] = "struct task_struct",
        ["init_mm"] = "struct mm_struct",
        ["init_uts_ns"] = "struct uts_namespace",
        ["init_pid_ns"] = "struct pid_namespace",
        ["init_nsproxy"] = "struct nsproxy",
        ["init_net"] = "struct net",
        ["modules"] = "struct list_head",
        ["btf_modules"] = "struct list_head",
        ["slab_caches"] = "struct list_head",
        ["vmap_area_list"] = "struct list_head",
        ["page_offset_base"] = "unsigned long",
        ["vmalloc_base"] = "unsigned long",
        ["vmemmap_base"] = "unsigned long",
        ["phys_base"] = "unsigned long",
        ["jiffies_64"] = "u64",
        ["jiffies"] = "unsigned long",
        ["nr_cpu_ids"] = "unsigned int",
        ["prb"] = "struct printk_ringbuffer *",
        ["saved_command_line"] = "char *",
        ["linux_banner"] = "char [0]",
    };

    private readonly object _lock = new();
    private readonly AddressSpace? _space;
    private readonly IKernelMemoryModel? _model;
    private readonly List<string> _evidence;
    private readonly Dictionary<string, object> _members = new(StringComparer.Ordinal);
    private BtfTypes? _types;
    private ulong? _pageOffsetBase;
    private ulong _directMapEnd;
    private int? _cpuCount;

    /// <summary>An x86-64 kernel: its address space, and where its image lies in it.</summary>
    internal LinuxKernel(MachineState machine, AddressSpace space, ulong textAddress, ulong imageEnd, Kallsyms symbols, string banner, ulong bannerAddress,
        Vmcoreinfo? vmcoreinfo, string? vmcoreinfoSource, KernelLocationMethod method, IReadOnlyList<string> evidence)
        : this(machine, textAddress, imageEnd, symbols, banner, bannerAddress, vmcoreinfo, vmcoreinfoSource, method, evidence)
    {
        _space = space;
        space.TryTranslate(textAddress, out ulong textPa);
        TextPhysicalAddress = textPa;
        PhysBase = (long)textPa - (long)(textAddress - KernelImageMap.StartKernelMap);
    }

    /// <summary>An AArch64 kernel: its layout from VMCOREINFO, its address space and how its memory reads.</summary>
    internal LinuxKernel(MachineState machine, Arm64KernelLayout layout, Arm64AddressSpace space, IKernelMemoryModel model, ulong textAddress, ulong imageEnd, Kallsyms symbols, string banner, ulong bannerAddress,
        Vmcoreinfo vmcoreinfo, string? vmcoreinfoSource, IReadOnlyList<string> evidence)
        : this(machine, textAddress, imageEnd, symbols, banner, bannerAddress, vmcoreinfo, vmcoreinfoSource, KernelLocationMethod.Vmcoreinfo, evidence)
    {
        Arm64Layout = layout;
        Arm64AddressSpace = space;
        _model = model;
        TextPhysicalAddress = layout.ImageToPhysical(textAddress);
        _pageOffsetBase = layout.PageOffset;
    }

    /// <summary>What every architecture's kernel has: the image, its symbols and banner, and how it was found.</summary>
    private LinuxKernel(MachineState machine, ulong textAddress, ulong imageEnd, Kallsyms symbols, string banner, ulong bannerAddress,
        Vmcoreinfo? vmcoreinfo, string? vmcoreinfoSource, KernelLocationMethod method, IReadOnlyList<string> evidence)
    {
        Machine = machine;
        TextAddress = textAddress;
        ImageEnd = imageEnd;
        Symbols = symbols;
        Banner = banner;
        BannerAddress = bannerAddress;
        Vmcoreinfo = vmcoreinfo;
        VmcoreinfoSource = vmcoreinfoSource;
        Method = method;
        _evidence = [.. evidence];
        Release = ReleaseOf(banner);
    }

    /// <summary>The machine the kernel runs in.</summary>
    public MachineState Machine { get; }

    /// <summary>Guest-physical memory.</summary>
    public IPhysicalMemory Memory => Machine.Memory;

    /// <summary>The guest's architecture (x86-64, or AArch64 with <see cref="Arm64Layout"/> set).</summary>
    public Arch.CpuArchitecture Architecture => Arm64Layout is null ? Arch.CpuArchitecture.X86_64 : Arch.CpuArchitecture.Arm64;

    /// <summary>
    /// The x86-64 kernel's address space (root: <c>init_top_pgt</c>, or a vCPU's CR3 with the kernel half selected).
    /// </summary>
    /// <exception cref="KernelDataException">An AArch64 kernel (see <see cref="Arm64AddressSpace"/>): this view does not read AArch64 guests yet.</exception>
    public AddressSpace AddressSpace => _space ?? throw Arm64NotYet("the kernel's x86-64 address space");

    /// <summary>An AArch64 kernel's layout from its VMCOREINFO (null for x86-64).</summary>
    public Arm64KernelLayout? Arm64Layout { get; }

    /// <summary>An AArch64 kernel's address space: swapper_pg_dir as TTBR1 (null for x86-64).</summary>
    public Arm64AddressSpace? Arm64AddressSpace { get; }

    /// <summary>4- or 5-level paging (x86-64).</summary>
    /// <exception cref="KernelDataException">An AArch64 kernel.</exception>
    public PagingMode Paging => AddressSpace.Mode;

    /// <summary>Physical address of the top-level page table used (swapper_pg_dir on AArch64).</summary>
    public ulong PageTableRoot => Arm64Layout is Arm64KernelLayout a ? a.SwapperPgDirPhysical : AddressSpace.Root;

    /// <summary>Runtime virtual address of <c>_text</c> (the first mapped byte of the image window).</summary>
    public ulong TextAddress { get; }

    /// <summary>Physical address of <c>_text</c>.</summary>
    public ulong TextPhysicalAddress { get; }

    /// <summary>One past the last mapped byte of the kernel image window (0 when not measured).</summary>
    public ulong ImageEnd { get; }

    /// <summary>phys_base: physical = image virtual − <c>__START_KERNEL_map</c> + phys_base. Can be negative.</summary>
    public long PhysBase { get; }

    /// <summary>The virtual KASLR slide: <c>_text</c> − 0xffffffff81000000 (VMCOREINFO <c>KERNELOFFSET</c>, which AArch64 reads directly).</summary>
    public long KaslrOffset => Arm64Layout is Arm64KernelLayout a ? (long)(a.KernelOffset ?? 0) : (long)(TextAddress - DefaultTextAddress);

    /// <summary>The kernel release (<c>uname -r</c>), from the banner.</summary>
    public string Release { get; }

    /// <summary>The <c>linux_banner</c> string (<c>/proc/version</c>), without the trailing newline.</summary>
    public string Banner { get; }

    /// <summary>Virtual address the banner was read from.</summary>
    public ulong BannerAddress { get; }

    /// <summary>The kernel's VMCOREINFO, when one was found.</summary>
    public Vmcoreinfo? Vmcoreinfo { get; }

    /// <summary>Where the VMCOREINFO came from, when one was found.</summary>
    public string? VmcoreinfoSource { get; }

    /// <summary>Which source gave the page-table root.</summary>
    public KernelLocationMethod Method { get; }

    /// <summary>Every step tried and what it found, in order (for <c>vmstate kernel-info</c>).</summary>
    public IReadOnlyList<string> Evidence => _evidence;

    /// <summary>The kernel's symbols.</summary>
    public Kallsyms Symbols { get; private set; }

    /// <summary>True once <see cref="Types"/> has been loaded.</summary>
    public bool TypesLoaded => _types is not null;

    /// <summary>
    /// The kernel's types: vmlinux BTF read from [<c>__start_BTF</c>, <c>__stop_BTF</c>) on first use (the same bytes
    /// as the guest's <c>/sys/kernel/btf/vmlinux</c>).
    /// </summary>
    /// <exception cref="KernelDataException">The kernel has no BTF symbols or the range cannot be read.</exception>
    public BtfTypes Types
    {
        get
        {
            if (_types is not null)
            {
                return _types;
            }

            lock (_lock)
            {
                return _types ??= LoadTypes();
            }
        }
    }

    /// <summary>
    /// Base of the direct map of all physical memory: the value of <c>page_offset_base</c> (randomized with
    /// CONFIG_RANDOMIZE_MEMORY), else the fixed PAGE_OFFSET of the paging mode.
    /// </summary>
    public ulong PageOffsetBase
    {
        get
        {
            if (_pageOffsetBase is ulong known)
            {
                return known;
            }

            ulong v = Symbols.TryGetAddress("page_offset_base", out ulong at)
                ? ReadU64(at, "page_offset_base")
                : Paging == PagingMode.Level5 ? 0xff11_0000_0000_0000UL : 0xffff_8880_0000_0000UL;
            ulong end = 0;
            foreach (MemoryRange r in Memory.Ranges)
            {
                end = Math.Max(end, r.End);
            }

            _directMapEnd = end;
            _pageOffsetBase = v;
            return v;
        }
    }

    /// <summary>Number of CPU ids the kernel may use: <c>nr_cpu_ids</c>, else the machine's vCPU count.</summary>
    public int CpuCount
    {
        get
        {
            if (_cpuCount is int n)
            {
                return n;
            }

            int count = Math.Max(Machine.Cpus.Count, Machine.Arm64Cpus.Count);
            if (Symbols.TryGetAddress("nr_cpu_ids", out ulong at) && TryReadU32(at, out uint ids) && ids is > 0 and <= 65536)
            {
                count = (int)ids;
            }

            _cpuCount = count;
            return count;
        }
    }

    /// <summary>
    /// <c>__per_cpu_offset[cpu]</c>: added to a per-CPU symbol's value gives that CPU's instance (Linux
    /// <c>include/asm-generic/percpu.h</c> <c>per_cpu_offset</c>). Equals the CPU's GS base in kernel mode; on AArch64
    /// it is read from the vCPU's TPIDR_EL1, where the kernel keeps it (<c>arm64 asm/percpu.h set_my_cpu_offset</c>).
    /// </summary>
    public ulong PerCpuOffset(int cpu)
    {
        if (cpu < 0 || cpu >= CpuCount)
        {
            throw new ArgumentOutOfRangeException(nameof(cpu), $"CPU {cpu} is outside 0..{CpuCount - 1} (nr_cpu_ids)");
        }

        if (Arm64Layout is not null)
        {
            return cpu < Machine.Arm64Cpus.Count ? Machine.Arm64Cpus[cpu].TpidrEl1 : throw new KernelDataException("per-CPU offset", $"CPU {cpu} has no vCPU state to read TPIDR_EL1 from");
        }

        return ReadU64(Symbols.AddressOf("__per_cpu_offset") + (8UL * (uint)cpu), $"__per_cpu_offset[{cpu}]");
    }

    /// <summary>Reads kernel virtual memory; returns the bytes read before the first unmapped byte.</summary>
    public int Read(ulong address, Span<byte> destination)
    {
        if (_model is not null)
        {
            return _model.Read(address, destination);
        }

        // Direct-map addresses (task_structs, kmalloc data) translate linearly; skip the page walk.
        ulong pob = _pageOffsetBase ?? 0;
        if (pob != 0 && address >= pob && address - pob < _directMapEnd && (ulong)destination.Length <= _directMapEnd - (address - pob))
        {
            return Memory.Read(address - pob, destination);
        }

        return AddressSpace.Read(address, destination);
    }

    /// <summary>Reads exactly <c>destination.Length</c> bytes or throws naming <paramref name="what"/>.</summary>
    /// <exception cref="KernelDataException">Part of the range is not mapped.</exception>
    public void ReadExactly(ulong address, Span<byte> destination, string what)
    {
        int n = Read(address, destination);
        if (n != destination.Length)
        {
            throw new KernelDataException(address + (ulong)n, what, n == 0 ? "not mapped" : $"only {n} of {destination.Length} bytes are mapped");
        }
    }

    /// <summary>Reads a little-endian u64.</summary>
    /// <exception cref="KernelDataException">Not mapped.</exception>
    public ulong ReadU64(ulong address, string what = "u64")
    {
        Span<byte> b = stackalloc byte[8];
        ReadExactly(address, b, what);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    /// <summary>Reads a little-endian u32.</summary>
    /// <exception cref="KernelDataException">Not mapped.</exception>
    public uint ReadU32(ulong address, string what = "u32")
    {
        Span<byte> b = stackalloc byte[4];
        ReadExactly(address, b, what);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    /// <summary>Reads a little-endian u64; false when not mapped.</summary>
    public bool TryReadU64(ulong address, out ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        bool ok = Read(address, b) == 8;
        value = ok ? BinaryPrimitives.ReadUInt64LittleEndian(b) : 0;
        return ok;
    }

    /// <summary>Reads a little-endian u32; false when not mapped.</summary>
    public bool TryReadU32(ulong address, out uint value)
    {
        Span<byte> b = stackalloc byte[4];
        bool ok = Read(address, b) == 4;
        value = ok ? BinaryPrimitives.ReadUInt32LittleEndian(b) : 0;
        return ok;
    }

    /// <summary>Reads a NUL-terminated string of at most <paramref name="maxLength"/> bytes (UTF-8, invalid bytes replaced).</summary>
    /// <exception cref="KernelDataException">The first byte is not mapped.</exception>
    public string ReadCString(ulong address, int maxLength, string what = "string")
    {
        byte[] buf = new byte[maxLength];
        int n = Read(address, buf);
        if (n == 0 && maxLength > 0)
        {
            throw new KernelDataException(address, what, "not mapped");
        }

        int nul = buf.AsSpan(0, n).IndexOf((byte)0);
        return Encoding.UTF8.GetString(buf, 0, nul >= 0 ? nul : n);
    }

    /// <summary>
    /// The global variable <paramref name="name"/>, typed from BTF: a per-CPU VAR is refused (use
    /// <see cref="PerCpu"/>), well-known globals come from a built-in declaration table (init_task, modules, …).
    /// </summary>
    /// <exception cref="KernelDataException">No such symbol, or no type is known for it.</exception>
    public KernelObject Object(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        ulong address = Symbols.AddressOf(name);
        if (IsPerCpu(name, out _))
        {
            throw new KernelDataException("kernel object", $"'{name}' is a per-CPU variable; use PerCpu(\"{name}\", cpu)");
        }

        if (!s_declarations.TryGetValue(name, out string? type))
        {
            throw new KernelDataException("kernel object", $"BTF has no declaration for the global '{name}'; give its type with Object(name, type)");
        }

        return KernelObject.At(this, Types.FindType(type), address, name);
    }

    /// <summary>The global <paramref name="name"/> as <paramref name="typeName"/> (C spelling, e.g. "struct list_head").</summary>
    /// <exception cref="KernelDataException">No such symbol.</exception>
    /// <exception cref="VmStateNotFoundException">No such type (<see cref="VmStateObjectKind.Type"/>).</exception>
    public KernelObject Object(string name, string typeName) => KernelObject.At(this, Types.FindType(typeName), Symbols.AddressOf(name), name);

    /// <summary>An object of <paramref name="typeName"/> at <paramref name="address"/>.</summary>
    /// <exception cref="VmStateNotFoundException">No such type (<see cref="VmStateObjectKind.Type"/>).</exception>
    public KernelObject ObjectAt(ulong address, string typeName) => KernelObject.At(this, Types.FindType(typeName), address);

    /// <summary>An object of type id <paramref name="typeId"/> at <paramref name="address"/>.</summary>
    public KernelObject ObjectAt(ulong address, int typeId) => KernelObject.At(this, typeId, address);

    /// <summary>
    /// CPU <paramref name="cpu"/>'s instance of the per-CPU variable <paramref name="name"/>: its kallsyms value (an
    /// offset on ≤6.14 x86-64, an address later; the rule is the same) plus <c>__per_cpu_offset[cpu]</c>, typed
    /// from its BTF VAR in the <c>.data..percpu</c> DATASEC.
    /// </summary>
    /// <exception cref="KernelDataException">Not a per-CPU variable with BTF, or unreadable.</exception>
    public KernelObject PerCpu(string name, int cpu)
    {
        if (!IsPerCpu(name, out int typeId))
        {
            throw new KernelDataException("per-CPU variable", $"'{name}' has no BTF VAR in the .data..percpu section");
        }

        return KernelObject.At(this, typeId, Symbols.AddressOf(name) + PerCpuOffset(cpu), $"per_cpu({name}, {cpu})");
    }

    /// <summary>The address space of a process whose <c>mm->pgd</c> is <paramref name="pgd"/> (a direct-map address).</summary>
    /// <exception cref="KernelDataException">An AArch64 kernel (see <see cref="Arm64ProcessAddressSpace"/>): this view does not read AArch64 guests yet.</exception>
    public AddressSpace ProcessAddressSpace(ulong pgd) => _space is null ? throw Arm64NotYet("a process's x86-64 address space") : new(Memory, Paging, pgd - PageOffsetBase);

    /// <summary>An AArch64 process's address space: <paramref name="pgd"/> (mm->pgd, a linear-map address) as TTBR0_EL1.</summary>
    /// <exception cref="NotSupportedException">An x86-64 kernel (see <see cref="ProcessAddressSpace"/>).</exception>
    public Arm64AddressSpace Arm64ProcessAddressSpace(ulong pgd) => Arm64Layout is Arm64KernelLayout a && Arm64AddressSpace is Arm64AddressSpace s
        ? s.WithTtbr0(a.LinearToPhysical(pgd))
        : throw new NotSupportedException("an x86-64 kernel: use ProcessAddressSpace");

    /// <summary>Reads a process's memory through the page tables whose top level is <paramref name="pgd"/> (mm->pgd).</summary>
    internal int ReadUser(ulong pgd, ulong address, Span<byte> destination) =>
        _model is not null ? _model.ReadUser(pgd, address, destination) : ProcessAddressSpace(pgd).Read(address, destination);

    /// <summary>The task_struct address CPU <paramref name="cpu"/> runs as its CPU state tells it (AArch64: SP_EL0 at EL1); null when it does not.</summary>
    internal ulong? CurrentTaskFromCpuState(int cpu) => _model?.CurrentTask(cpu);

    /// <summary>Replaces the symbols with a table that adds data symbols found after location, noting how.</summary>
    internal void AddSymbols(Kallsyms symbols, string evidence)
    {
        Symbols = symbols;
        _evidence.Add(evidence);
    }

    /// <summary>Adds a line of evidence.</summary>
    internal void AddEvidence(string evidence) => _evidence.Add(evidence);

    private static KernelDataException Arm64NotYet(string what) =>
        new(what, "not available for an AArch64 kernel: this command reads x86-64 guests only so far (the arm64 views: kernel-info, ps, pstree, dmesg, modules, netdev, maps, symbols, types)");

    private static string ReleaseOf(string banner)
    {
        string rest = banner.StartsWith("Linux version ", StringComparison.Ordinal) ? banner["Linux version ".Length..] : banner;
        int sp = rest.IndexOf(' ');
        return sp > 0 ? rest[..sp] : rest;
    }

    /// <summary>Replaces the evidence with that of the search that first found this kernel (a location kept between runs).</summary>
    internal void RestoreEvidence(IReadOnlyList<string> evidence)
    {
        _evidence.Clear();
        _evidence.AddRange(evidence);
    }

    /// <summary>Replaces the symbols (a System.map override), noting why in <see cref="Evidence"/>.</summary>
    internal void OverrideSymbols(Kallsyms symbols, string evidence)
    {
        Symbols = symbols;
        _pageOffsetBase = Arm64Layout?.PageOffset;
        _evidence.Add(evidence);
    }

    /// <summary>Replaces the types (a vmlinux/BTF file override), noting why in <see cref="Evidence"/>.</summary>
    internal void OverrideTypes(BtfTypes types, string evidence)
    {
        lock (_lock)
        {
            _types = types;
        }

        lock (_members)
        {
            _members.Clear();
        }

        _evidence.Add(evidence);
    }

    /// <summary>Offset of a member path inside a type, cached (objects resolve the same members over and over).</summary>
    internal BtfMemberLocation MemberOf(int typeId, string path)
    {
        string key = string.Concat(typeId.ToString(System.Globalization.CultureInfo.InvariantCulture), ":", path);
        lock (_members)
        {
            if (_members.TryGetValue(key, out object? known))
            {
                return (BtfMemberLocation)known;
            }
        }

        BtfMemberLocation found = Types.FindMember(typeId, path)
            ?? throw new KernelDataException("kernel object", $"{Types.TypeName(typeId)} has no member '{path}'");
        lock (_members)
        {
            _members[key] = found;
        }

        return found;
    }

    private bool IsPerCpu(string name, out int typeId)
    {
        typeId = 0;
        int var = Types.Find(name, BtfKind.Variable);
        if (var == 0)
        {
            return false;
        }

        typeId = Types.Get(var).ReferencedType;
        return true;
    }

    private BtfTypes LoadTypes()
    {
        if (!Symbols.TryGetAddress("__start_BTF", out ulong start) || !Symbols.TryGetAddress("__stop_BTF", out ulong stop))
        {
            throw new KernelDataException("kernel BTF", "kallsyms has no __start_BTF/__stop_BTF (a kernel built without CONFIG_DEBUG_INFO_BTF, or without CONFIG_KALLSYMS_ALL)");
        }

        if (stop <= start || stop - start > MaxBtfSize)
        {
            throw new KernelDataException(start, "kernel BTF", $"__stop_BTF 0x{stop:x} does not give a size between 1 and {MaxBtfSize} bytes");
        }

        byte[] blob = new byte[stop - start];
        ReadExactly(start, blob, "kernel BTF [__start_BTF, __stop_BTF)");
        return BtfTypes.Parse(blob);
    }
}
