using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Export;
using VmState.Linux;
using VmState.Machine;
using VmState.Memory;
using VmState.Views;

namespace VmState.Mount;

/// <summary>
/// The filesystem view of a VM (the tree <c>vmstate mount</c> serves): <c>machine/</c> (guest-physical memory as a
/// sparse file, the hardware state), <c>linux/</c> (the list views as text and JSON, the kernel's symbols) and
/// <c>proc/PID/</c> (each process's command line, environment, maps and virtual memory). Files are made on first
/// use from the same views the CLI prints, and kept: the tree is for a snapshot, which does not change.
/// </summary>
public static class VmMountTree
{
    /// <summary>The tree of <paramref name="vm"/>; the Linux parts appear only when a Linux kernel is found.</summary>
    /// <remarks>
    /// FUSE serves requests on several threads; the Linux layer's caches (page-table walks, kernel objects) are not
    /// made for concurrent use, so everything that reads the guest's kernel data runs under one lock per tree.
    /// Physical memory is read without it (its sources are safe for concurrent reads).
    /// </remarks>
    public static MountDirectory Build(Vm vm)
    {
        ArgumentNullException.ThrowIfNull(vm);
        var guest = new Guarded(vm.Linux, new Lock());
        return new MountDirectory("root", () => Root(vm, guest));
    }

    /// <summary>The Linux guest and the lock every use of it takes.</summary>
    private sealed record Guarded(LinuxGuest Linux, Lock Gate)
    {
        public T Use<T>(Func<LinuxGuest, T> read)
        {
            lock (Gate)
            {
                return read(Linux);
            }
        }
    }

    private static IEnumerable<MountNode> Root(Vm vm, Guarded guest)
    {
        yield return Machine(vm.Machine);
        LinuxKernel? kernel = null;
        try
        {
            kernel = guest.Use(l => l.Kernel);
        }
        catch (KernelDataException)
        {
            // No Linux kernel in this machine: machine/ only.
        }

        if (kernel is not null)
        {
            yield return Linux(guest);
            yield return new MountDirectory("proc", () => Processes(guest));
        }
    }

    private static MountDirectory Machine(MachineState m) => new("machine",
        PhysicalMemory(m.Memory),
        new MountContentFile("hardware.json", () =>
        {
            using var ms = new MemoryStream();
            HardwareJsonWriter.Write(m, ms);
            return ms.ToArray();
        }));

    /// <summary>Guest-physical memory: file offset = guest-physical address, holes read as zeros.</summary>
    public static MountRangeFile PhysicalMemory(IPhysicalMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        IReadOnlyList<MemoryRange> ranges = memory.Ranges;
        long size = ranges.Count == 0 ? 0 : (long)Math.Min(ranges[^1].End, long.MaxValue);
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
        });
    }

    private static MountDirectory Linux(Guarded g) => new("linux", () =>
    [
        Text("ps", () => g.Use(l => Table(LinuxListViews.Processes(false), l.Processes()))),
        Text("ps.json", () => g.Use(l => Json(LinuxListViews.Processes(false), l.Processes()))),
        Text("modules", () => g.Use(l => Table(LinuxListViews.Modules, l.Modules()))),
        Text("modules.json", () => g.Use(l => Json(LinuxListViews.Modules, l.Modules()))),
        Text("netdev", () => g.Use(l => Table(LinuxListViews.NetDevices, l.NetDevices()))),
        Text("netdev.json", () => g.Use(l => Json(LinuxListViews.NetDevices, l.NetDevices()))),
        Text("dmesg", () => g.Use(l => Table(LinuxListViews.KernelLog(false), l.KernelLog()))),
        Text("kallsyms", () => g.Use(l => Table(LinuxListViews.Symbols(false), l.FindSymbols(null, modules: true)))),
        Text("release", () => g.Use(l => l.Kernel.Release + "\n")),
        Text("banner", () => g.Use(l => l.Kernel.Banner + "\n")),
    ]);

    private static IEnumerable<MountNode> Processes(Guarded g)
    {
        foreach (LinuxProcess p in g.Use(l => l.Processes(threads: false, commandLines: false)))
        {
            int pid = p.Pid;
            yield return new MountDirectory(pid.ToString(CultureInfo.InvariantCulture), () => Process(g, p));
        }
    }

    private static IEnumerable<MountNode> Process(Guarded g, LinuxProcess p)
    {
        int pid = p.Pid;
        yield return Text("comm", () => p.Comm + "\n");
        yield return Text("status", () => Status(p));
        if (p.IsKernelThread)
        {
            // No user memory: /proc shows empty cmdline, environ and maps, and mem cannot be read.
            yield return Text("cmdline", () => string.Empty);
            yield return Text("maps", () => string.Empty);
            yield break;
        }

        yield return new MountContentFile("cmdline", () => g.Use(l => l.CommandLine(pid)));
        yield return new MountContentFile("environ", () => g.Use(l => l.Environment(pid)));
        yield return Text("maps", () => g.Use(l => Table(LinuxListViews.Maps, l.Maps(pid))));
        yield return Text("maps.json", () => g.Use(l => Json(LinuxListViews.Maps, l.Maps(pid))));
        yield return ProcessMemory(g, pid);
    }

    /// <summary>
    /// A process's virtual memory, as <c>/proc/PID/mem</c>: pread at a virtual address; an address that is not mapped
    /// (or whose page is not in memory) is an I/O error. Size 0 and direct I/O, so any offset is passed through.
    /// </summary>
    private static MountRangeFile ProcessMemory(Guarded g, int pid) => new("mem", 0, (offset, destination) =>
    {
        int n;
        lock (g.Gate)
        {
            n = g.Linux.ProcessAddressSpace(pid).Read((ulong)offset, destination);
        }

        if (n <= 0)
        {
            throw new IOException($"virtual address 0x{offset:x} of process {pid} is not mapped or not in memory");
        }

        return n;
    }, directIo: true);

    private static string Status(LinuxProcess p) => string.Create(CultureInfo.InvariantCulture,
        $"Name:\t{p.Name}\nState:\t{p.State}\nTgid:\t{p.Tgid}\nPid:\t{p.Pid}\nPPid:\t{p.Ppid}\nUid:\t{p.Uid}\nGid:\t{p.Gid}\nThreads:\t{p.Threads}\n");

    private static MountContentFile Text(string name, Func<string> text) => new(name, () => Encoding.UTF8.GetBytes(text()));

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
