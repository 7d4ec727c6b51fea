using VmState.Arch.X86;
using VmState.Formats.Migration;
using VmState.Linux;
using VmState.Machine;

namespace VmState.History;

/// <summary>
/// Computes a <see cref="HistoryDiff"/>: lists from the two captures' indexes, new log lines from the indexes of the
/// captures between, changed pages from the page maps (content ids), and per process the pages its user address space
/// maps in the later capture (its page tables walked there) whose content ids differ.
/// </summary>
internal static class HistoryDiffer
{
    public static HistoryDiff Diff(HistoryStore store, HistoryCapture from, HistoryCapture to, bool processPages)
    {
        HistoryCaptureIndex a = store.ReadIndex(from);
        HistoryCaptureIndex b = store.ReadIndex(to);
        string? kernelError = a.KernelError ?? b.KernelError;

        var before = new HashSet<(int, ulong)>();
        foreach (HistoryProcess p in a.Processes)
        {
            before.Add((p.Pid, p.StartTimeNs));
        }

        var after = new HashSet<(int, ulong)>();
        foreach (HistoryProcess p in b.Processes)
        {
            after.Add((p.Pid, p.StartTimeNs));
        }

        var started = b.Processes.Where(p => !before.Contains((p.Pid, p.StartTimeNs))).ToList();
        var exited = a.Processes.Where(p => !after.Contains((p.Pid, p.StartTimeNs))).ToList();
        var loaded = b.Modules.Where(m => !a.Modules.Contains(m)).ToList();
        var unloaded = a.Modules.Where(m => !b.Modules.Contains(m)).ToList();
        var added = b.NetDevices.Where(d => !a.NetDevices.Any(o => o.Name == d.Name && o.IfIndex == d.IfIndex)).ToList();
        var removed = a.NetDevices.Where(d => !b.NetDevices.Any(o => o.Name == d.Name && o.IfIndex == d.IfIndex)).ToList();
        var changed = b.NetDevices.Where(d => a.NetDevices.Any(o => o.Name == d.Name && o.IfIndex == d.IfIndex && o != d)).ToList();
        (List<HistoryLogLine> lines, bool complete) = NewLines(store, from, to, a, b);

        IReadOnlyDictionary<string, long[]> mapsA = store.PageMaps(from);
        IReadOnlyDictionary<string, long[]> mapsB = store.PageMaps(to);
        long changedPages = 0;
        foreach ((string name, long[] mb) in mapsB)
        {
            mapsA.TryGetValue(name, out long[]? ma);
            for (int p = 0; p < mb.Length; p++)
            {
                if (Differs(ma, mb, p))
                {
                    changedPages++;
                }
            }
        }

        foreach ((string name, long[] ma) in mapsA)
        {
            if (!mapsB.ContainsKey(name))
            {
                changedPages += ma.Count(e => e != PageMap.NotSent);
            }
        }

        var perProcess = new List<HistoryProcessPages>();
        string? processError = null;
        long processChanged = 0;
        if (processPages)
        {
            try
            {
                processChanged = ProcessPages(store, to, b, mapsA, mapsB, perProcess);
            }
            catch (VmStateException e)
            {
                processError = e.Message;
                perProcess.Clear();
            }
        }
        else
        {
            processError = "not asked for";
        }

        perProcess.Sort((x, y) => y.ChangedPages != x.ChangedPages ? y.ChangedPages.CompareTo(x.ChangedPages) : x.Pid.CompareTo(y.Pid));
        return new HistoryDiff(from, to, started, exited, loaded, unloaded, added, removed, changed, lines, complete,
            changedPages, processError is null ? changedPages - processChanged : changedPages, perProcess, processError, kernelError);
    }

    private static bool Differs(long[]? before, long[] after, int page)
    {
        long old = before is not null && page < before.Length ? before[page] : PageMap.NotSent;
        return old != after[page];
    }

    /// <summary>The log lines after <paramref name="a"/> up to <paramref name="b"/>, from the indexes of the captures between (each keeps the lines new since its predecessor).</summary>
    private static (List<HistoryLogLine> Lines, bool Complete) NewLines(HistoryStore store, HistoryCapture from, HistoryCapture to, HistoryCaptureIndex a, HistoryCaptureIndex b)
    {
        var lines = new List<HistoryLogLine>();
        if (to.Number <= from.Number || b.KernelError is not null)
        {
            return (lines, true);
        }

        bool sameBoot = a.KernelError is null && a.KernelTextAddress == b.KernelTextAddress && b.LogNext >= a.LogNext;
        ulong threshold = sameBoot ? a.LogNext : 0;
        ulong covered = threshold;
        bool complete = true;
        foreach (HistoryCapture c in store.Captures)
        {
            if (c.Number <= from.Number || c.Number > to.Number)
            {
                continue;
            }

            HistoryCaptureIndex i = c.Number == to.Number ? b : store.ReadIndex(c);
            if (i.KernelError is not null)
            {
                continue;
            }

            if (i.LogAfter == 0 && threshold > 0 && i.LogNext < threshold)
            {
                // A reboot between the captures: what follows is a new log.
                lines.Clear();
                threshold = 0;
                covered = 0;
            }

            if (i.LogAfter > covered || (i.LogFirst > covered && i.LogAfter > 0))
            {
                complete = false;
            }

            foreach (HistoryLogLine l in i.NewLogLines)
            {
                if (l.Sequence >= covered)
                {
                    lines.Add(l);
                    covered = l.Sequence + 1;
                }
            }

            covered = Math.Max(covered, i.LogNext);
        }

        return (lines, complete);
    }

    /// <summary>Fills <paramref name="result"/> per process of <paramref name="to"/>; returns the changed pages mapped by any of them (each counted once).</summary>
    private static long ProcessPages(HistoryStore store, HistoryCapture to, HistoryCaptureIndex b, IReadOnlyDictionary<string, long[]> mapsA,
        IReadOnlyDictionary<string, long[]> mapsB, List<HistoryProcessPages> result)
    {
        using MachineState machine = store.OpenCapture(to);
        LinuxKernel kernel = KernelLocator.Locate(machine);
        var ram = (MigrationRamMemory)machine.Memory;
        ulong userEnd = kernel.Paging == PagingMode.Level5 ? 1UL << 56 : 1UL << 47;
        ulong pageSize = (ulong)store.PageSize;
        var changedAnywhere = new HashSet<(string, long)>();
        foreach (HistoryProcess p in b.Processes)
        {
            if (p.IsKernelThread)
            {
                continue;
            }

            AddressSpace space;
            try
            {
                KernelObject mm = MemoryMaps.UserMm(MemoryMaps.FindTask(kernel, p.Pid));
                space = kernel.ProcessAddressSpace(mm.Member("pgd").ToUInt64());
            }
            catch (VmStateException)
            {
                continue;
            }

            var seen = new HashSet<(string, long)>();
            long changed = 0;
            foreach (VirtualMapping m in space.Mappings(0, userEnd))
            {
                for (ulong off = 0; off < m.Size; off += pageSize)
                {
                    if (!ram.TryLocate(m.PhysicalAddress + off, out RamBlock block, out ulong blockOffset, out _))
                    {
                        continue;
                    }

                    long page = (long)(blockOffset / pageSize);
                    if (!seen.Add((block.Name, page)) || !mapsB.TryGetValue(block.Name, out long[]? mb) || page >= mb.Length)
                    {
                        continue;
                    }

                    mapsA.TryGetValue(block.Name, out long[]? ma);
                    if (Differs(ma, mb, (int)page))
                    {
                        changed++;
                        changedAnywhere.Add((block.Name, page));
                    }
                }
            }

            result.Add(new HistoryProcessPages(p.Pid, p.Name, seen.Count, changed));
        }

        return changedAnywhere.Count;
    }
}
