using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Arch.X86;
using VmState.Export;
using VmState.Formats.Elf;
using VmState.Linux;
using VmState.Machine;
using VmState.Memory;
using VmState.Views;

namespace VmState.Mount;

/// <summary>
/// The filesystem view of a VM (the tree <c>vmstate mount</c> serves): <c>machine/</c> (guest-physical memory as a
/// sparse file, the ELF core streamed from it, the hardware state, each vCPU's registers and each device's state),
/// <c>linux/</c> (the list views as text and JSON, the kernel's symbols and BTF) and <c>proc/PID/</c> (each process's
/// command line, environment, maps, virtual memory, core and threads' registers). Files are made on first use from
/// the same views the CLI prints. A snapshot's are kept; a running VM's listings and renderings are made again after
/// <see cref="VmMountOptions.Refresh"/>, each open of a file reading the rendering it was given (one moment per open).
/// </summary>
public static class VmMountTree
{
    // A refresh interval no mount outlives: a file made at its first open and kept (a process core, a snapshot's).
    private static readonly TimeSpan s_once = TimeSpan.FromDays(36500);

    /// <summary>The tree of <paramref name="vm"/>; the Linux parts appear only when a Linux kernel is found.</summary>
    /// <remarks>
    /// FUSE serves requests on several threads; the Linux layer's caches (page-table walks, kernel objects) are not
    /// made for concurrent use, so everything that reads the guest's kernel data runs under one lock per tree.
    /// Physical memory is read without it (its sources are safe for concurrent reads).
    /// </remarks>
    public static MountDirectory Build(Vm vm, VmMountOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(vm);
        options ??= new VmMountOptions();
        TimeSpan? refresh = options.Refresh ?? (vm.IsLive ? VmMountOptions.DefaultLiveRefresh : null);
        if (refresh is TimeSpan r && r <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "the refresh interval must be positive");
        }

        var view = new View(vm, vm.Linux, new Lock(), refresh, options.WritableMemory, options.CurrentState ?? (() => vm.Machine));
        return new MountDirectory("root", () => Root(view));
    }

    /// <summary>What every node of one tree shares: the VM, the guest and the lock every use of it takes.</summary>
    private sealed class View(Vm vm, LinuxGuest linux, Lock gate, TimeSpan? refresh, IWritableMemory? writable, Func<MachineState> current)
    {
        private readonly long _refreshTicks = refresh is TimeSpan r ? Math.Max(1, (long)(r.TotalSeconds * System.Diagnostics.Stopwatch.Frequency)) : 0;
        private long _readAt = System.Diagnostics.Stopwatch.GetTimestamp();

        public Vm Vm => vm;

        public TimeSpan? Refresh => refresh;

        public IWritableMemory? Writable => writable;

        /// <summary>The memory the tree reads: the writable overlay when there is one (so reads see the writes).</summary>
        public IPhysicalMemory Memory => (IPhysicalMemory?)writable ?? vm.Machine.Memory;

        public MachineState Current() => current();

        /// <summary>Runs <paramref name="read"/> on the guest under the lock; a running guest's cached views are dropped first once they are older than the refresh interval.</summary>
        public T Use<T>(Func<LinuxGuest, T> read)
        {
            lock (gate)
            {
                if (_refreshTicks > 0 && System.Diagnostics.Stopwatch.GetTimestamp() - _readAt >= _refreshTicks)
                {
                    linux.Refresh();
                    linux.Kernel.AddressSpace.Invalidate();
                    _readAt = System.Diagnostics.Stopwatch.GetTimestamp();
                }

                return read(linux);
            }
        }

        /// <summary>A file rendered from the guest: once for a snapshot, at each open after the interval for a running VM.</summary>
        public MountContentFile Text(string name, Func<string> text) => new(name, () => Encoding.UTF8.GetBytes(text()), refresh);

        public MountContentFile Bytes(string name, Func<byte[]> bytes) => new(name, bytes, refresh);

        public MountDirectory Directory(string name, Func<IEnumerable<MountNode>> children) => new(name, children, refresh);
    }

    private static IEnumerable<MountNode> Root(View v)
    {
        yield return Machine(v);
        LinuxKernel? kernel = null;
        try
        {
            kernel = v.Use(l => l.Kernel);
        }
        catch (KernelDataException)
        {
            // No Linux kernel in this machine: machine/ only.
        }

        if (kernel is not null)
        {
            yield return Linux(v);
            yield return v.Directory("proc", () => Processes(v));
        }
    }

    private static MountDirectory Machine(View v)
    {
        MachineState m = v.Vm.Machine;
        var children = new List<MountNode>
        {
            PhysicalMemory(v.Memory, v.Writable, cached: v.Refresh is null && v.Writable is null),
            CoreFile(v),
            v.Bytes("hardware.json", () =>
            {
                using var ms = new MemoryStream();
                HardwareJsonWriter.Write(v.Current(), ms);
                return ms.ToArray();
            }),
        };
        if (m.Cpus.Count > 0)
        {
            children.Add(new MountDirectory("cpus", () => m.Cpus.Select(c => (MountNode)Cpu(v, c.Index))));
        }

        if (m.Devices.Count > 0)
        {
            children.Add(new MountDirectory("devices", () => Devices(m.Devices)));
        }

        return new MountDirectory("machine", [.. children]);
    }

    /// <summary>Guest-physical memory: file offset = guest-physical address, holes read as zeros.</summary>
    public static MountRangeFile PhysicalMemory(IPhysicalMemory memory) => PhysicalMemory(memory, null, cached: true);

    /// <summary>
    /// Guest-physical memory: file offset = guest-physical address, holes read as zeros; with
    /// <paramref name="writable"/>, writes go to it (a write into a hole is an error); <paramref name="cached"/> lets
    /// the kernel keep pages between opens (a snapshot; a running VM's are dropped at each open).
    /// </summary>
    public static MountRangeFile PhysicalMemory(IPhysicalMemory memory, IWritableMemory? writable, bool cached)
    {
        ArgumentNullException.ThrowIfNull(memory);
        IReadOnlyList<MemoryRange> ranges = memory.Ranges;
        long size = ranges.Count == 0 ? 0 : (long)Math.Min(ranges[^1].End, long.MaxValue);
        Func<long, ReadOnlySpan<byte>, int>? write = writable is null ? null : (offset, source) =>
        {
            ulong address = (ulong)offset;
            int i = ranges.FindRange(address);
            if (offset >= size || i < 0)
            {
                throw new IOException($"guest-physical 0x{address:x} is not RAM: nothing to write");
            }

            int n = writable.Write(address, source[..(int)Math.Min((ulong)source.Length, ranges[i].End - address)]);
            return n > 0 ? n : throw new IOException($"guest-physical 0x{address:x} could not be written to {writable.Name}");
        };
        return new MountRangeFile("physmem", size, (offset, destination) =>
        {
            if (offset >= size)
            {
                return 0;
            }

            int want = (int)Math.Min(destination.Length, size - offset);
            ulong address = (ulong)offset;
            int i = ranges.FindRange(address);
            if (i >= 0)
            {
                int n = memory.Read(address, destination[..(int)Math.Min((ulong)want, ranges[i].End - address)]);
                if (n <= 0)
                {
                    throw new IOException($"guest-physical 0x{address:x} could not be read from {memory.Name}");
                }

                return n;
            }

            // A hole: zeros up to the next range (or the end).
            ulong next = (ulong)size;
            foreach (MemoryRange r in ranges)
            {
                if (r.Start > address)
                {
                    next = r.Start;
                    break;
                }
            }

            int zeros = (int)Math.Min((ulong)want, next - address);
            destination[..zeros].Clear();
            return zeros;
        }, write, directIo: false, keepCache: cached);
    }

    /// <summary>
    /// <c>core.elf</c>: the core <c>vmstate extract</c> writes (vCPU notes, VMCOREINFO when the machine carries it,
    /// kernel virtual aliases), laid out at the first open (a running VM: at each open, with the registers read then)
    /// and read from guest memory, never written anywhere.
    /// </summary>
    private static MountFile CoreFile(View v) => new MountOpenedFile("core.elf", () =>
    {
        MachineState m = v.Current();
        byte[]? vmcoreinfo = VmcoreinfoLocator.Find(m, scan: false)?.Note;
        IReadOnlyList<VirtualMapping> aliases = m.Cpus.Count > 0 ? CpuAddressSpaces.KernelMappings(m) : [];
        ElfCoreView core = ElfCoreView.Create(m, vmcoreinfo, aliases, v.Memory);
        return new MountRangeFile("core.elf", core.Size, core.Read, null, directIo: false, keepCache: v.Refresh is null);
    }, v.Refresh is not null);

    private static MountDirectory Cpu(View v, int index) => new(index.ToString(CultureInfo.InvariantCulture), () =>
    [
        v.Text("registers", () => RegisterText(CpuOf(v, index))),
        v.Bytes("registers.json", () =>
        {
            using var ms = new MemoryStream();
            using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
            {
                HardwareJsonWriter.WriteCpu(w, CpuOf(v, index));
            }

            ms.WriteByte((byte)'\n');
            return ms.ToArray();
        }),
    ]);

    private static X86CpuState CpuOf(View v, int index) =>
        v.Current().Cpus.FirstOrDefault(c => c.Index == index) ?? throw new IOException($"vCPU {index} is gone");

    /// <summary>One register per line, "name value" (the registers of hardware.json, then the segments).</summary>
    public static string RegisterText(X86CpuState cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        var text = new StringBuilder();
        foreach (X86Register r in X86Registers.All)
        {
            if (r.InHardwareFile)
            {
                text.Append(CultureInfo.InvariantCulture, $"{r.Name,-12}0x{r.Get(cpu):x16}\n");
            }
        }

        for (int i = 0; i < 6; i++)
        {
            Segment(X86CpuState.SegmentNames[i], cpu.Segments[i]);
        }

        Segment("ldt", cpu.Ldt);
        Segment("tr", cpu.Tr);
        Segment("gdt", cpu.Gdt);
        Segment("idt", cpu.Idt);
        return text.ToString();

        void Segment(string name, X86Segment s) =>
            text.Append(CultureInfo.InvariantCulture, $"{name,-12}selector 0x{s.Selector:x4} base 0x{s.Base:x16} limit 0x{s.Limit:x8} flags 0x{s.Flags:x}\n");
    }

    /// <summary>
    /// <c>devices/NAME.json</c>, one per device section: its id ('/' written as '_'), with <c>.INSTANCE</c> when
    /// several share the id.
    /// </summary>
    private static IEnumerable<MountNode> Devices(IReadOnlyList<DeviceState> devices)
    {
        var counts = devices.GroupBy(d => d.IdStr).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        foreach (DeviceState d in devices)
        {
            string id = d.IdStr.Replace('/', '_');
            if (id is "" or "." or "..")
            {
                id = $"section-{d.SectionId}";
            }

            string name = counts[d.IdStr] > 1 ? $"{id}.{d.InstanceId}.json" : $"{id}.json";
            yield return new MountContentFile(name, () =>
            {
                using var ms = new MemoryStream();
                using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
                {
                    HardwareJsonWriter.WriteDevice(w, d);
                }

                ms.WriteByte((byte)'\n');
                return ms.ToArray();
            });
        }
    }

    private static MountDirectory Linux(View v) => new("linux", () =>
    [
        v.Text("kernel-info", () => v.Use(l => KernelInfoText.Format(l.Kernel, KernelSummary.Read(l.Kernel)))),
        v.Text("ps", () => v.Use(l => Table(LinuxListViews.Processes(false), l.Processes()))),
        v.Text("ps.json", () => v.Use(l => Json(LinuxListViews.Processes(false), l.Processes()))),
        v.Text("modules", () => v.Use(l => Table(LinuxListViews.Modules, l.Modules()))),
        v.Text("modules.json", () => v.Use(l => Json(LinuxListViews.Modules, l.Modules()))),
        v.Text("netdev", () => v.Use(l => Table(LinuxListViews.NetDevices, l.NetDevices()))),
        v.Text("netdev.json", () => v.Use(l => Json(LinuxListViews.NetDevices, l.NetDevices()))),
        v.Text("dmesg", () => v.Use(l => Table(LinuxListViews.KernelLog(false), l.KernelLog()))),
        v.Text("dmesg.json", () => v.Use(l => Json(LinuxListViews.KernelLog(false), l.KernelLog()))),
        v.Text("kallsyms", () => v.Use(l => Table(LinuxListViews.Symbols(false), l.FindSymbols(null, modules: true)))),
        v.Text("System.map", () => v.Use(l => SystemMap(l.Kernel))),
        v.Text("release", () => v.Use(l => l.Kernel.Release + "\n")),
        v.Text("banner", () => v.Use(l => l.Kernel.Banner + "\n")),
        new MountDirectory("btf", () => Btf(v)),
    ]);

    /// <summary>The kernel's symbols as a System.map file: "address type name", by address.</summary>
    private static string SystemMap(LinuxKernel kernel)
    {
        var symbols = new List<KernelSymbol>(kernel.Symbols.Count);
        for (int i = 0; i < kernel.Symbols.Count; i++)
        {
            symbols.Add(kernel.Symbols[i]);
        }

        symbols.Sort((a, b) => a.Address != b.Address ? a.Address.CompareTo(b.Address) : string.CompareOrdinal(a.Name, b.Name));
        var text = new StringBuilder(symbols.Count * 40);
        foreach (KernelSymbol s in symbols)
        {
            text.Append(s.ToString()).Append('\n');
        }

        return text.ToString();
    }

    /// <summary><c>btf/vmlinux</c> and one raw split-BTF blob per module, as <c>/sys/kernel/btf</c> has them.</summary>
    private static IEnumerable<MountNode> Btf(View v)
    {
        BtfAvailable? vmlinux = null;
        try
        {
            vmlinux = v.Use(l => new BtfAvailable(l.Kernel.Types.Data.ToArray()));
        }
        catch (KernelDataException)
        {
            // A kernel without BTF: an empty directory.
        }

        if (vmlinux is null)
        {
            yield break;
        }

        yield return new MountContentFile("vmlinux", () => vmlinux.Bytes);
        IReadOnlyList<ModuleBtf> modules = [];
        try
        {
            modules = v.Use(l => ModuleBtfList.Read(l.Kernel));
        }
        catch (KernelDataException)
        {
            // No module BTF (CONFIG_DEBUG_INFO_BTF_MODULES off): vmlinux only.
        }

        foreach (ModuleBtf m in modules)
        {
            if (m.Name is not ("" or "." or "..") && !m.Name.Contains('/', StringComparison.Ordinal))
            {
                yield return new MountContentFile(m.Name, () => m.Types.Data.ToArray());
            }
        }
    }

    private sealed record BtfAvailable(byte[] Bytes);

    private static IEnumerable<MountNode> Processes(View v)
    {
        foreach (LinuxProcess p in v.Use(l => l.Processes(threads: false, commandLines: false)))
        {
            int pid = p.Pid;
            bool kernelThread = p.IsKernelThread;
            yield return new MountDirectory(pid.ToString(CultureInfo.InvariantCulture), () => Process(v, pid, kernelThread));
        }
    }

    /// <summary>The process as the guest has it now (a snapshot: as listed), or an I/O error once it has exited.</summary>
    private static LinuxProcess Find(View v, int pid, bool threads = false) =>
        v.Use(l => l.Processes(threads, commandLines: false)).FirstOrDefault(p => p.Pid == pid)
        ?? throw new IOException($"process {pid} has exited");

    private static IEnumerable<MountNode> Process(View v, int pid, bool kernelThread)
    {
        yield return v.Text("comm", () => Find(v, pid).Comm + "\n");
        yield return v.Text("status", () => Status(Find(v, pid)));
        if (kernelThread)
        {
            // No user memory: /proc shows empty cmdline, environ and maps, and mem cannot be read.
            yield return v.Text("cmdline", () => string.Empty);
            yield return v.Text("maps", () => string.Empty);
            yield break;
        }

        yield return v.Bytes("cmdline", () => v.Use(l => l.CommandLine(pid)));
        yield return v.Bytes("environ", () => v.Use(l => l.Environment(pid)));
        yield return v.Text("maps", () => v.Use(l => Table(LinuxListViews.Maps, l.Maps(pid))));
        yield return v.Text("maps.json", () => v.Use(l => Json(LinuxListViews.Maps, l.Maps(pid))));
        yield return ProcessMemory(v, pid);
        if (ResidentExecutable(v, pid) is CachedFile exe)
        {
            yield return new MountRangeFile("exe", exe.Size, exe.Read);
        }

        yield return new MountContentFile("core", () => ProcessCoreBytes(v, pid), v.Refresh ?? s_once);
        yield return new MountDirectory("task", () => Threads(v, pid), v.Refresh);
    }

    /// <summary>
    /// A process's virtual memory, as <c>/proc/PID/mem</c>: pread (and with a writable memory, pwrite) at a virtual
    /// address; an address that is not mapped (or whose page is not in memory) is an I/O error. Size 0 and direct
    /// I/O, so any offset is passed through. The process's page-table root is looked up once (a running VM: again
    /// after the refresh interval, so an exited process gives I/O errors).
    /// </summary>
    private static MountRangeFile ProcessMemory(View v, int pid)
    {
        var gate = new Lock();
        AddressSpace? space = null;
        long madeAt = 0;
        long refreshTicks = v.Refresh is TimeSpan r ? Math.Max(1, (long)(r.TotalSeconds * System.Diagnostics.Stopwatch.Frequency)) : long.MaxValue;

        AddressSpace Space()
        {
            long now = System.Diagnostics.Stopwatch.GetTimestamp();
            if (space is null || now - madeAt >= refreshTicks)
            {
                AddressSpace own = v.Use(l => l.ProcessAddressSpace(pid));
                space = new AddressSpace(v.Memory, own.Mode, own.Root);
                madeAt = now;
            }

            return space;
        }

        Func<long, ReadOnlySpan<byte>, int>? write = v.Writable is not IWritableMemory target ? null : (offset, source) =>
        {
            int n;
            lock (gate)
            {
                n = Space().Write((ulong)offset, source, target);
            }

            return n > 0 ? n : throw new IOException($"virtual address 0x{offset:x} of process {pid} is not mapped or not in memory");
        };
        return new MountRangeFile("mem", 0, (offset, destination) =>
        {
            int n;
            lock (gate)
            {
                n = Space().Read((ulong)offset, destination);
            }

            return n > 0 ? n : throw new IOException($"virtual address 0x{offset:x} of process {pid} is not mapped or not in memory");
        }, write, directIo: true, keepCache: false);
    }

    /// <summary>
    /// <c>proc/PID/exe</c>: the process's executable file read from the guest's page cache, present only when every
    /// page of it is in memory (a file with holes would be a wrong copy); the file's path in the guest is what
    /// <c>/proc/PID/exe</c> links to, here the file's content.
    /// </summary>
    private static CachedFile? ResidentExecutable(View v, int pid)
    {
        try
        {
            return v.Use(l => l.Executable(pid)) is { IsComplete: true } exe ? exe : null;
        }
        catch (Exception e) when (e is KernelDataException or VmStateNotFoundException)
        {
            return null;
        }
    }

    /// <summary><c>proc/PID/core</c>: the process's ELF core (<c>vmstate procdump</c>), made when the file is opened.</summary>
    private static byte[] ProcessCoreBytes(View v, int pid)
    {
        string dir = Directory.CreateTempSubdirectory("vmstate-mount-core-").FullName;
        try
        {
            string path = Path.Combine(dir, "core");
            v.Use(l => ProcessCore.Write(l.Kernel, pid, path));
            return File.ReadAllBytes(path);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary><c>task/TID/registers</c>: each thread's user registers, as its core's NT_PRSTATUS carries them.</summary>
    private static IEnumerable<MountNode> Threads(View v, int pid)
    {
        IReadOnlyList<ThreadUserRegisters> threads;
        try
        {
            threads = v.Use(l => ProcessCore.ThreadRegisters(l.Kernel, pid));
        }
        catch (Exception e) when (e is KernelDataException or VmStateNotFoundException)
        {
            yield break;
        }

        foreach (ThreadUserRegisters t in threads)
        {
            int tid = t.Tid;
            yield return new MountDirectory(tid.ToString(CultureInfo.InvariantCulture), () =>
            [
                v.Text("registers", () => UserRegisterText(v.Use(l => ProcessCore.ThreadRegisters(l.Kernel, pid)).FirstOrDefault(x => x.Tid == tid)
                    ?? throw new IOException($"thread {tid} has exited"))),
            ]);
        }
    }

    private static string UserRegisterText(ThreadUserRegisters t)
    {
        var text = new StringBuilder();
        foreach (X86Register r in X86Registers.UserRegs)
        {
            text.Append(CultureInfo.InvariantCulture, $"{r.Name,-12}0x{t.Registers[r.UserRegsIndex]:x16}\n");
        }

        return text.Append(CultureInfo.InvariantCulture, $"# {t.Source}\n").ToString();
    }

    private static string Status(LinuxProcess p) => string.Create(CultureInfo.InvariantCulture,
        $"Name:\t{p.Name}\nState:\t{p.State}\nTgid:\t{p.Tgid}\nPid:\t{p.Pid}\nPPid:\t{p.Ppid}\nUid:\t{p.Uid}\nGid:\t{p.Gid}\nThreads:\t{p.Threads}\n");

    private static string Table<T>(ListView<T> view, IEnumerable<T> rows)
    {
        var text = new StringBuilder();
        if (view.FormatHeader() is string header)
        {
            text.Append(header).Append('\n');
        }

        foreach (T row in rows)
        {
            text.Append(view.FormatRow(row)).Append('\n');
        }

        return text.ToString();
    }

    private static string Json<T>(ListView<T> view, IEnumerable<T> rows)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            ListJson.WriteArray(w, view, rows);
        }

        return Encoding.UTF8.GetString(ms.ToArray()) + "\n";
    }
}
