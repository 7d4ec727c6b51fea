using System.Text.RegularExpressions;
using VmState.Formats.Migration;
using VmState.Linux;
using VmState.Machine;

namespace VmState.History;

/// <summary>
/// Predicates over every capture of a history store (<c>history find</c>). Process and log predicates are answered
/// from the captures' indexes alone; a kernel symbol's value is read once per distinct page content (a capture whose
/// page holding the symbol has the content id of the previous one has the same value, found from its page map);
/// a byte pattern is searched once per unique page of the store, then per capture from its page map.
/// </summary>
public static class HistoryQuery
{
    /// <summary>The longest pattern <see cref="Bytes"/> searches for (each unique page keeps its edges of one byte less).</summary>
    public const int MaxPatternBytes = 64;

    /// <summary>The captures where a process named <paramref name="nameOrPid"/> (comm or /proc name, or a pid) exists, or with <paramref name="absent"/> does not.</summary>
    public static HistoryFindResult Process(HistoryStore store, string nameOrPid, bool absent = false)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(nameOrPid);
        var hits = new List<HistoryFindHit>();
        var unknown = new List<HistoryFindHit>();
        foreach (HistoryCapture c in store.Captures)
        {
            HistoryCaptureIndex index = store.ReadIndex(c);
            if (index.KernelError is string error)
            {
                unknown.Add(new HistoryFindHit(c, error));
                continue;
            }

            List<HistoryProcess> found = [.. index.Processes.Where(p => p.Matches(nameOrPid))];
            if (found.Count > 0 != absent)
            {
                hits.Add(new HistoryFindHit(c, absent ? "absent" : string.Join(", ", found.Select(p => $"pid {p.Pid} {p.Name} (ppid {p.Ppid}, started {p.StartTimeNs / 1e9:F2} s after boot)"))));
            }
        }

        return new HistoryFindResult($"process {nameOrPid} {(absent ? "absent" : "exists")}", hits, store.Captures.Count, 0, unknown);
    }

    /// <summary>The captures whose kernel log holds a line matching <paramref name="pattern"/> (from the indexes: each line is stored once, in the capture that first saw it).</summary>
    public static HistoryFindResult LogLine(HistoryStore store, Regex pattern)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(pattern);
        var hits = new List<HistoryFindHit>();
        var unknown = new List<HistoryFindHit>();
        var matching = new List<HistoryLogLine>();
        int boot = 0;
        var bootOf = new List<int>();
        foreach (HistoryCapture c in store.Captures)
        {
            HistoryCaptureIndex index = store.ReadIndex(c);
            if (index.KernelError is string error)
            {
                unknown.Add(new HistoryFindHit(c, error));
                continue;
            }

            if (index.LogAfter == 0 && matching.Count > 0)
            {
                // The first capture, or a new boot: sequence numbers start again.
                boot++;
                matching.Clear();
                bootOf.Clear();
            }

            foreach (HistoryLogLine l in index.NewLogLines)
            {
                if (pattern.IsMatch(l.Text))
                {
                    matching.Add(l);
                    bootOf.Add(boot);
                }
            }

            // A line is in this capture's log when its sequence number is within the ring's range here.
            HistoryLogLine? inRing = matching.FirstOrDefault(l => l.Sequence >= index.LogFirst && l.Sequence < index.LogNext);
            if (inRing is not null)
            {
                hits.Add(new HistoryFindHit(c, inRing.Format()));
            }
        }

        return new HistoryFindResult($"kernel log line matching /{pattern}/", hits, store.Captures.Count, 0, unknown);
    }

    /// <summary>
    /// The captures where the <paramref name="size"/>-byte little-endian value at kernel symbol
    /// <paramref name="expression"/> (<c>jiffies</c>, <c>name+0x10</c>) equals <paramref name="equals"/>, or when it is
    /// null, differs from its value in the previous capture (the first capture counts as a change).
    /// </summary>
    public static HistoryFindResult Symbol(HistoryStore store, string expression, int size = 8, ulong? equals = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(expression);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(size, 8);
        var hits = new List<HistoryFindHit>();
        var unknown = new List<HistoryFindHit>();
        var values = new Dictionary<long, byte[]>();
        List<(string Block, long Page, int Offset, int Length)>? where = null;
        ulong text = 0;
        ulong? previous = null;
        long pagesRead = 0;
        byte[] page = new byte[store.PageSize];
        foreach (HistoryCapture c in store.Captures)
        {
            HistoryCaptureIndex index = store.ReadIndex(c);
            if (index.KernelError is string error)
            {
                unknown.Add(new HistoryFindHit(c, error));
                previous = null;
                continue;
            }

            if (where is null || index.KernelTextAddress != text)
            {
                // Where the symbol is in RAM depends only on the kernel's placement: found once per boot.
                where = Locate(store, c, expression, size);
                text = index.KernelTextAddress;
            }

            IReadOnlyDictionary<string, long[]> maps = store.PageMaps(c);
            ulong value = 0;
            int shift = 0;
            foreach ((string block, long p, int offset, int length) in where)
            {
                long e = maps.TryGetValue(block, out long[]? map) && p < map.Length ? map[p] : PageMap.NotSent;
                for (int i = 0; i < length; i++, shift += 8)
                {
                    byte b;
                    if (e >= 0)
                    {
                        if (!values.TryGetValue(e, out byte[]? bytes))
                        {
                            store.ReadPage(e, page);
                            pagesRead++;
                            bytes = page.AsSpan(offset, length).ToArray();
                            values[e] = bytes;
                        }

                        b = bytes[i];
                    }
                    else
                    {
                        b = PageMap.IsFill(e, out byte fill) ? fill : (byte)0;
                    }

                    value |= (ulong)b << shift;
                }
            }

            bool holds = equals is ulong want ? value == want : previous != value;
            if (holds)
            {
                hits.Add(new HistoryFindHit(c, previous is ulong old && equals is null ? $"0x{value:x} (was 0x{old:x})" : $"0x{value:x}"));
            }

            previous = value;
        }

        string what = equals is ulong v ? $"{expression} == 0x{v:x}" : $"{expression} changed";
        return new HistoryFindResult($"{what} ({size} bytes)", hits, store.Captures.Count, pagesRead, unknown);
    }

    /// <summary>
    /// The captures whose guest physical memory contains <paramref name="pattern"/> (1-64 bytes), with the first
    /// physical address in each. Every unique page of the store is decompressed and searched once; pattern occurrences
    /// across a page boundary are found from the pages' edges.
    /// </summary>
    public static HistoryFindResult Bytes(HistoryStore store, ReadOnlySpan<byte> pattern)
    {
        ArgumentNullException.ThrowIfNull(store);
        if (pattern.Length is < 1 or > MaxPatternBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(pattern), pattern.Length, $"a pattern of 1 to {MaxPatternBytes} bytes");
        }

        int ps = store.PageSize;
        if (pattern.Length > ps)
        {
            throw new ArgumentOutOfRangeException(nameof(pattern), pattern.Length, $"a pattern of at most one page ({ps} bytes)");
        }

        byte[] pat = pattern.ToArray();
        int edge = pat.Length - 1;
        if (store.UniquePages * 2 * edge > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(pattern), pattern.Length, $"the store has {store.UniquePages} unique pages: search for at most {Array.MaxLength / Math.Max(1, 2 * store.UniquePages) + 1} bytes");
        }

        // Per content id: the offset of the first match in the page (-1 none), and its first and last `edge` bytes.
        int[] firstMatch = new int[store.UniquePages];
        byte[] edges = new byte[store.UniquePages * 2 * edge];
        byte[] pageBuf = new byte[ps];
        for (long id = 0; id < store.UniquePages; id++)
        {
            store.ReadPage(id, pageBuf);
            firstMatch[id] = pageBuf.AsSpan().IndexOf(pat);
            if (edge > 0)
            {
                pageBuf.AsSpan(0, edge).CopyTo(edges.AsSpan((int)(id * 2 * edge), edge));
                pageBuf.AsSpan(ps - edge, edge).CopyTo(edges.AsSpan((int)((id * 2 * edge) + edge), edge));
            }
        }

        bool fillHolds(byte fill) => !pat.AsSpan().ContainsAnyExcept(fill);
        byte[] joined = new byte[2 * edge];
        byte[] fillEdge = new byte[edge];

        ReadOnlySpan<byte> Head(long e)
        {
            if (e >= 0)
            {
                return edges.AsSpan((int)(e * 2 * edge), edge);
            }

            fillEdge.AsSpan().Fill(PageMap.IsFill(e, out byte f) ? f : (byte)0);
            return fillEdge;
        }

        ReadOnlySpan<byte> Tail(long e) => e >= 0 ? edges.AsSpan((int)((e * 2 * edge) + edge), edge) : Head(e);

        var hits = new List<HistoryFindHit>();
        IReadOnlyList<RamBlockInfo>? layout = null;
        // Per block, the previous capture's map and, per page, whether a match starts in it (inside it, or across its
        // end into the next page): only pages whose entry or whose successor's entry changed are looked at again.
        var state = new Dictionary<string, (long[] Map, bool[] Hit, int Count)>(StringComparer.Ordinal);
        foreach (HistoryCapture c in store.Captures)
        {
            string? found = null;
            foreach ((string block, long[] map) in store.PageMaps(c))
            {
                if (!state.TryGetValue(block, out var s) || s.Map.Length != map.Length)
                {
                    s = (new long[map.Length], new bool[map.Length], 0);
                    s.Map.AsSpan().Fill(long.MinValue);
                }

                for (long p = 0; p < map.Length; p++)
                {
                    if (map[p] == s.Map[p] && (p + 1 >= map.Length || map[p + 1] == s.Map[p + 1]))
                    {
                        continue;
                    }

                    bool hit = MatchAt(map, p) >= 0;
                    if (hit != s.Hit[p])
                    {
                        s.Hit[p] = hit;
                        s.Count += hit ? 1 : -1;
                    }
                }

                Array.Copy(map, s.Map, map.Length);
                state[block] = s;
                if (found is null && s.Count > 0)
                {
                    long p = Array.IndexOf(s.Hit, true);
                    if (layout is null)
                    {
                        using MachineState machine = store.OpenCapture(c);
                        layout = machine.RamBlocks;
                    }

                    found = Where(layout, block, (ulong)((p * ps) + MatchAt(map, p)));
                }
            }

            if (found is not null)
            {
                hits.Add(new HistoryFindHit(c, found));
            }
        }

        // Where a match starts in page p of a block's map: inside the page, else across its end; -1 for none.
        long MatchAt(long[] map, long p)
        {
            long e = map[p];
            if (e == PageMap.NotSent)
            {
                return -1;
            }

            long at = e >= 0 ? firstMatch[e] : (PageMap.IsFill(e, out byte f) && fillHolds(f) ? 0 : -1);
            if (at < 0 && edge > 0 && p + 1 < map.Length && map[p + 1] != PageMap.NotSent)
            {
                Tail(e).CopyTo(joined);
                Head(map[p + 1]).CopyTo(joined.AsSpan(edge));
                int j = joined.AsSpan().IndexOf(pat);
                at = j >= 0 ? ps - edge + j : -1;
            }

            return at;
        }

        return new HistoryFindResult($"memory contains {Convert.ToHexString(pat).ToLowerInvariant()}", hits, store.Captures.Count, store.UniquePages, []);
    }

    private static string Where(IReadOnlyList<RamBlockInfo> layout, string block, ulong offset)
    {
        foreach (RamBlockInfo info in layout)
        {
            foreach (BlockMapping m in info.Mappings)
            {
                if (info.Name == block && offset >= m.BlockOffset && offset < m.BlockOffset + m.Length)
                {
                    return $"at physical 0x{m.GuestPhysicalAddress + (offset - m.BlockOffset):x}";
                }
            }
        }

        return $"in RAM block {block} at offset 0x{offset:x} (not mapped)";
    }

    /// <summary>The RAM pages and offsets holding <paramref name="size"/> bytes at <paramref name="expression"/> in capture <paramref name="c"/>.</summary>
    private static List<(string, long, int, int)> Locate(HistoryStore store, HistoryCapture c, string expression, int size)
    {
        using MachineState machine = store.OpenCapture(c);
        LinuxKernel kernel = KernelLocator.Locate(machine);
        ulong va = SymbolExpression.Parse(expression).Resolve(kernel);
        var ram = (MigrationRamMemory)machine.Memory;
        var result = new List<(string, long, int, int)>();
        int ps = store.PageSize;
        int done = 0;
        while (done < size)
        {
            ulong at = va + (ulong)done;
            if (!kernel.AddressSpace.TryTranslate(at, out ulong pa) || !ram.TryLocate(pa, out RamBlock block, out ulong offset, out _))
            {
                throw new KernelDataException(at, expression, "the address is not mapped to guest RAM");
            }

            int inPage = (int)(offset % (ulong)ps);
            int n = Math.Min(size - done, ps - inPage);
            result.Add((block.Name, (long)(offset / (ulong)ps), inPage, n));
            done += n;
        }

        return result;
    }
}
