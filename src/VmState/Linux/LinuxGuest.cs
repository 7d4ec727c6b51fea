using VmState.Arch.X86;
using VmState.Machine;

namespace VmState.Linux;

/// <summary>
/// The Linux kernel of a <see cref="Vm"/> and the views over it: the kernel is located once, on first use, and
/// each view is read once and kept (<see cref="Refresh"/> drops the views, e.g. to re-read a running guest).
/// </summary>
/// <remarks>
/// The views are the library's own readers (<see cref="ProcessList"/>, <see cref="ModuleList"/>,
/// <see cref="NetDeviceList"/>, <see cref="Linux.KernelLog"/>, <see cref="MemoryMaps"/>); this type only locates
/// and caches. Calls are serialised, so one instance can be shared between threads.
/// </remarks>
public sealed class LinuxGuest
{
    private readonly Func<MachineState> _machine;
    private readonly object _gate = new();
    private readonly Dictionary<(bool Threads, bool CommandLines), IReadOnlyList<LinuxProcess>> _processes = [];
    private readonly Dictionary<int, IReadOnlyList<LinuxVma>> _maps = [];
    private LinuxKernel? _kernel;
    private IReadOnlyList<LinuxModule>? _modules;
    private IReadOnlyList<LinuxNetDevice>? _netDevices;
    private IReadOnlyList<KernelLogRecord>? _log;

    /// <summary>A guest over <paramref name="machine"/>'s current state, located with <paramref name="options"/>.</summary>
    internal LinuxGuest(Func<MachineState> machine, KernelLocatorOptions? options)
    {
        _machine = machine;
        Options = options ?? KernelLocatorOptions.Default;
    }

    /// <summary>How the kernel is located (sources, System.map and BTF overrides).</summary>
    public KernelLocatorOptions Options { get; }

    /// <summary>The guest's kernel, located on first use (<see cref="KernelLocator.Locate"/>) and kept.</summary>
    /// <exception cref="KernelDataException">No kernel was found; a later call tries again.</exception>
    public LinuxKernel Kernel
    {
        get
        {
            lock (_gate)
            {
                return _kernel ??= KernelLocator.Locate(_machine(), Options);
            }
        }
    }

    /// <summary>The processes (with <paramref name="threads"/>, every thread), as <c>ps</c> lists them.</summary>
    /// <param name="threads">List every thread, not only thread-group leaders.</param>
    /// <param name="commandLines">Read each process's command line from its memory (slower).</param>
    public IReadOnlyList<LinuxProcess> Processes(bool threads = false, bool commandLines = true)
    {
        LinuxKernel kernel = Kernel;
        lock (_gate)
        {
            if (!_processes.TryGetValue((threads, commandLines), out IReadOnlyList<LinuxProcess>? list))
            {
                list = ProcessList.Read(kernel, threads, commandLines);
                _processes[(threads, commandLines)] = list;
            }

            return list;
        }
    }

    /// <summary>The loaded kernel modules.</summary>
    public IReadOnlyList<LinuxModule> Modules()
    {
        LinuxKernel kernel = Kernel;
        lock (_gate)
        {
            return _modules ??= ModuleList.Read(kernel);
        }
    }

    /// <summary>The network devices of the initial network namespace.</summary>
    public IReadOnlyList<LinuxNetDevice> NetDevices()
    {
        LinuxKernel kernel = Kernel;
        lock (_gate)
        {
            return _netDevices ??= NetDeviceList.Read(kernel);
        }
    }

    /// <summary>The kernel log (printk ring buffer), oldest record first.</summary>
    public IReadOnlyList<KernelLogRecord> KernelLog()
    {
        LinuxKernel kernel = Kernel;
        lock (_gate)
        {
            // The method shadows the type's name inside this class.
            return _log ??= global::VmState.Linux.KernelLog.Read(kernel);
        }
    }

    /// <summary>The memory mappings of process <paramref name="pid"/>, as <c>/proc/PID/maps</c> lists them.</summary>
    /// <exception cref="KernelDataException">No such process, a kernel thread (no user memory), or corrupt guest data.</exception>
    public IReadOnlyList<LinuxVma> Maps(int pid)
    {
        LinuxKernel kernel = Kernel;
        lock (_gate)
        {
            if (!_maps.TryGetValue(pid, out IReadOnlyList<LinuxVma>? vmas))
            {
                vmas = MemoryMaps.Read(kernel, pid);
                _maps[pid] = vmas;
            }

            return vmas;
        }
    }

    /// <summary>
    /// The kernel-virtual address of <paramref name="expression"/>: <c>name</c>, <c>name+0x10</c> or <c>name+16</c>
    /// (see <see cref="SymbolExpression"/>), looked up in the kernel's symbols (kallsyms, or the System.map given).
    /// </summary>
    /// <exception cref="ArgumentException">The offset is not a number.</exception>
    /// <exception cref="UnknownSymbolException">The kernel has no symbol of that name.</exception>
    public ulong Symbol(string expression)
    {
        SymbolExpression parsed = SymbolExpression.Parse(expression);
        return parsed.Resolve(Kernel);
    }

    /// <summary>
    /// The kernel symbols whose names match <paramref name="pattern"/> (all with null), in kallsyms order; with
    /// <paramref name="modules"/>, then the loaded modules' symbols, module by module, as <c>/proc/kallsyms</c> lists them.
    /// </summary>
    /// <exception cref="KernelDataException">A module's symbol table is corrupt.</exception>
    public IReadOnlyList<SymbolMatch> FindSymbols(NamePattern? pattern = null, bool modules = false)
    {
        LinuxKernel kernel = Kernel;
        Kallsyms symbols = kernel.Symbols;
        var matches = new List<SymbolMatch>();
        for (int i = 0; i < symbols.Count; i++)
        {
            if (pattern is null || pattern.IsMatch(symbols.NameAt(i)))
            {
                matches.Add(new SymbolMatch(symbols[i], 0, null));
            }
        }

        if (modules)
        {
            foreach (LinuxModule mod in Modules())
            {
                foreach (KernelSymbol s in ModuleList.Symbols(kernel, mod))
                {
                    if (pattern is null || pattern.IsMatch(s.Name))
                    {
                        matches.Add(new SymbolMatch(s, 0, mod.Name));
                    }
                }
            }
        }

        return matches;
    }

    /// <summary>
    /// The kernel symbol that contains <paramref name="address"/> (at or at most 64 KiB below it, see
    /// <see cref="Kallsyms.TrySymbolize"/>), with the offset into it; null when there is none.
    /// </summary>
    public SymbolMatch? SymbolAt(ulong address) =>
        Kernel.Symbols.TrySymbolize(address, out KernelSymbol symbol, out ulong offset) ? new SymbolMatch(symbol, offset, null) : null;

    /// <summary>A kernel type by name, as <see cref="KernelTypeLookup.Find(LinuxKernel, string, string?)"/> finds it.</summary>
    /// <exception cref="VmStateNotFoundException">No such type, or no module of that name with BTF.</exception>
    public KernelTypeMatch FindType(string name, string? module = null) => KernelTypeLookup.Find(Kernel, name, module);

    /// <summary>The processes (thread-group leaders) as a tree of parents and children, as <c>pstree</c> shows them.</summary>
    public IReadOnlyList<ProcessTreeNode> ProcessTree() => global::VmState.Linux.ProcessTree.Build(Processes(threads: false, commandLines: false));

    /// <summary>
    /// The address space of process <paramref name="pid"/> (any thread of it): its <c>mm-&gt;pgd</c> in the kernel's
    /// paging mode, for reading and translating the process's virtual addresses.
    /// </summary>
    /// <exception cref="VmStateNotFoundException">No such process (<see cref="VmStateObjectKind.Process"/>).</exception>
    /// <exception cref="KernelDataException">A kernel thread (no user memory), or corrupt guest data.</exception>
    public AddressSpace ProcessAddressSpace(int pid)
    {
        LinuxKernel kernel = Kernel;
        KernelObject mm = MemoryMaps.UserMm(MemoryMaps.FindTask(kernel, pid));
        return kernel.ProcessAddressSpace(mm.Member("pgd").ToUInt64());
    }

    /// <summary>
    /// The address space of process <paramref name="pid"/> on an AArch64 guest: its <c>mm-&gt;pgd</c> as TTBR0_EL1
    /// (the kernel's swapper_pg_dir as TTBR1_EL1), for reading and translating the process's virtual addresses.
    /// </summary>
    /// <exception cref="VmStateNotFoundException">No such process (<see cref="VmStateObjectKind.Process"/>).</exception>
    /// <exception cref="KernelDataException">A kernel thread (no user memory), or corrupt guest data.</exception>
    /// <exception cref="NotSupportedException">An x86-64 guest (see <see cref="ProcessAddressSpace"/>).</exception>
    public Arch.Arm64.Arm64AddressSpace Arm64ProcessAddressSpace(int pid)
    {
        LinuxKernel kernel = Kernel;
        KernelObject mm = MemoryMaps.UserMm(MemoryMaps.FindTask(kernel, pid));
        return kernel.Arm64ProcessAddressSpace(mm.Member("pgd").ToUInt64());
    }

    /// <summary>
    /// The argument vector of process <paramref name="pid"/> as <c>/proc/PID/cmdline</c> gives it (NUL-separated, from
    /// its memory; at most 1 MiB, and up to the first page not in memory).
    /// </summary>
    /// <exception cref="VmStateNotFoundException">No such process.</exception>
    /// <exception cref="KernelDataException">A kernel thread (no user memory), or corrupt guest data.</exception>
    public byte[] CommandLine(int pid) => UserRange(pid, "arg_start", "arg_end");

    /// <summary>The environment of process <paramref name="pid"/> as <c>/proc/PID/environ</c> gives it (as <see cref="CommandLine"/>).</summary>
    /// <exception cref="VmStateNotFoundException">No such process.</exception>
    /// <exception cref="KernelDataException">A kernel thread (no user memory), or corrupt guest data.</exception>
    public byte[] Environment(int pid) => UserRange(pid, "env_start", "env_end");

    /// <summary>
    /// The executable of process <paramref name="pid"/> (what <c>/proc/PID/exe</c> links to) as the guest's page cache
    /// holds it: its path, size and the pages in memory (<see cref="CachedFile.IsComplete"/> when the whole file can
    /// be read); null for a kernel thread.
    /// </summary>
    /// <exception cref="VmStateNotFoundException">No such process.</exception>
    /// <exception cref="KernelDataException">Corrupt or unreadable kernel data.</exception>
    public CachedFile? Executable(int pid) => PageCache.Executable(Kernel, pid);

    private byte[] UserRange(int pid, string start, string end)
    {
        LinuxKernel kernel = Kernel;
        KernelObject mm = MemoryMaps.UserMm(MemoryMaps.FindTask(kernel, pid));
        return ProcessList.UserRange(kernel, mm, start, end, 1 << 20);
    }

    /// <summary>A follower of the kernel log (<c>dmesg -w</c>) for a running guest; each poll reads the ring again, past the cached views.</summary>
    public KernelLogFollower FollowKernelLog() => new(Kernel);

    /// <summary>Drops the cached views (not the kernel's location), so the next call reads the guest again.</summary>
    public void Refresh()
    {
        lock (_gate)
        {
            _processes.Clear();
            _maps.Clear();
            _modules = null;
            _netDevices = null;
            _log = null;
        }
    }
}
