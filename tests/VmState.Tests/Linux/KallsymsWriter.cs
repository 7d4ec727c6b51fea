using System.Buffers.Binary;
using System.Text;
using VmState.Linux;

namespace VmState.Tests.Linux;

/// <summary>Table orders written by the kernel's <c>scripts/kallsyms.c write_src</c> over the versions.</summary>
public enum KallsymsOrder
{
    /// <summary>≤6.1 mainline: offsets, relative_base, num_syms, names, markers, token_table, token_index.</summary>
    Pre64,

    /// <summary>6.2/6.3 and the Debian 6.1.y backport: as Pre64 with seqs_of_names between markers and token_table.</summary>
    Pre64WithSeqs,

    /// <summary>6.4+: num_syms, names, markers, token_table, token_index, offsets, relative_base, seqs_of_names.</summary>
    Post64,
}

/// <summary>
/// Writes a symbol table in the kernel's kallsyms format, independently of the reader: best-pair token compression
/// into the byte values no name uses (as <c>scripts/kallsyms.c optimize_token_table</c> does), 1–2 byte record
/// lengths, markers every 256 records, 8-byte aligned labels, and each address encoding.
/// </summary>
public sealed class KallsymsWriter
{
    private readonly List<(string Name, char Type, ulong Address)> _symbols;
    private readonly KallsymsAddressEncoding _encoding;
    private readonly KallsymsOrder _order;
    private readonly ulong _relativeBase;
    private readonly bool _bigLengths;

    public KallsymsWriter(IEnumerable<(string Name, char Type, ulong Address)> symbols, KallsymsAddressEncoding encoding, KallsymsOrder order, ulong relativeBase, bool bigLengths = true)
    {
        _symbols = [.. symbols.OrderBy(s => s.Address).ThenBy(s => s.Name, StringComparer.Ordinal)];
        _encoding = encoding;
        _order = order;
        _relativeBase = relativeBase;
        _bigLengths = bigLengths;
    }

    /// <summary>Labels of the last build: "kallsyms_names" etc. → address.</summary>
    public Dictionary<string, ulong> Labels { get; } = [];

    /// <summary>Records whose length needed two bytes (or, without big lengths, a length byte ≥ 0x80).</summary>
    public int LongRecords { get; private set; }

    /// <summary>Token slots left empty (no pair worth a slot).</summary>
    public int EmptyTokens { get; private set; }

    /// <summary>The symbols in table order.</summary>
    public IReadOnlyList<(string Name, char Type, ulong Address)> Symbols => _symbols;

    /// <summary>The tables laid out for placement at <paramref name="baseAddress"/> (8-aligned).</summary>
    public byte[] Build(ulong baseAddress)
    {
        Assert.True(baseAddress % 8 == 0);
        (List<byte[]> records, byte[][] tokens) = Compress();
        int n = _symbols.Count;
        var o = new List<byte>();
        Labels.Clear();

        void Label(string name)
        {
            while (o.Count % 8 != 0)
            {
                o.Add(0);
            }

            Labels[name] = baseAddress + (ulong)o.Count;
        }

        void U32(uint v) => o.AddRange(BitConverter.GetBytes(v));
        void U64(ulong v) => o.AddRange(BitConverter.GetBytes(v));

        void Addresses()
        {
            if (_encoding == KallsymsAddressEncoding.Absolute)
            {
                Label("kallsyms_addresses");
                foreach ((_, _, ulong a) in _symbols)
                {
                    U64(a);
                }

                return;
            }

            Label("kallsyms_offsets");
            for (int i = 0; i < n; i++)
            {
                (_, char type, ulong a) = _symbols[i];
                Assert.True(type == 'A' || _encoding == KallsymsAddressEncoding.PlaceRelative || a >= _relativeBase, "relative encodings cannot express addresses below the base");
                long v = _encoding switch
                {
                    KallsymsAddressEncoding.BaseRelative => (long)(a - _relativeBase),
                    KallsymsAddressEncoding.AbsolutePercpu => type == 'A' ? (long)a : -(long)(a - _relativeBase) - 1,
                    _ => (long)(a - (baseAddress + (ulong)o.Count)),
                };
                Assert.InRange(v, int.MinValue, _encoding == KallsymsAddressEncoding.BaseRelative ? uint.MaxValue : int.MaxValue);
                U32((uint)v);
            }

            if (_encoding != KallsymsAddressEncoding.PlaceRelative)
            {
                Label("kallsyms_relative_base");
                U64(_relativeBase);
            }
        }

        void NamesThroughTokens()
        {
            Label("kallsyms_num_syms");
            U32((uint)n);
            Label("kallsyms_names");
            int namesStart = o.Count;
            var markers = new List<uint>();
            LongRecords = 0;
            for (int i = 0; i < n; i++)
            {
                if (i % 256 == 0)
                {
                    markers.Add((uint)(o.Count - namesStart));
                }

                byte[] r = records[i];
                if (r.Length > 0x7F)
                {
                    LongRecords++;
                    if (_bigLengths)
                    {
                        o.Add((byte)((r.Length & 0x7F) | 0x80));
                        o.Add((byte)(r.Length >> 7));
                    }
                    else
                    {
                        Assert.True(r.Length <= 0xFF);
                        o.Add((byte)r.Length);
                    }
                }
                else
                {
                    o.Add((byte)r.Length);
                }

                o.AddRange(r);
            }

            Label("kallsyms_markers");
            foreach (uint m in markers)
            {
                U32(m);
            }

            if (_order == KallsymsOrder.Pre64WithSeqs)
            {
                Seqs();
            }

            Label("kallsyms_token_table");
            int tableStart = o.Count;
            var index = new ushort[256];
            for (int t = 0; t < 256; t++)
            {
                index[t] = (ushort)(o.Count - tableStart);
                o.AddRange(tokens[t]);
                o.Add(0);
            }

            Label("kallsyms_token_index");
            foreach (ushort x in index)
            {
                o.AddRange(BitConverter.GetBytes(x));
            }
        }

        void Seqs()
        {
            Label("kallsyms_seqs_of_names");
            int[] order = [.. Enumerable.Range(0, n).OrderBy(i => _symbols[i].Name, StringComparer.Ordinal)];
            foreach (int i in order)
            {
                o.Add((byte)(i >> 16));
                o.Add((byte)(i >> 8));
                o.Add((byte)i);
            }
        }

        if (_order == KallsymsOrder.Post64)
        {
            NamesThroughTokens();
            Addresses();
            Seqs();
        }
        else
        {
            Addresses();
            NamesThroughTokens();
        }

        while (o.Count % 8 != 0)
        {
            o.Add(0);
        }

        return [.. o];
    }

    /// <summary>Type letter + name per symbol, then greedy best-pair replacement into unused byte values.</summary>
    private (List<byte[]> Records, byte[][] Tokens) Compress()
    {
        var seqs = _symbols.Select(s => Encoding.Latin1.GetBytes(s.Type + s.Name).Select(b => (int)b).ToList()).ToList();
        var tokens = new byte[256][];
        var used = new bool[256];
        foreach (List<int> s in seqs)
        {
            foreach (int b in s)
            {
                used[b] = true;
            }
        }

        for (int i = 0; i < 256; i++)
        {
            tokens[i] = used[i] ? [(byte)i] : [];
        }

        EmptyTokens = 0;
        for (int slot = 255; slot >= 0; slot--)
        {
            if (used[slot])
            {
                continue;
            }

            var counts = new int[256 * 256];
            int best = -1;
            foreach (List<int> s in seqs)
            {
                for (int i = 0; i + 1 < s.Count; i++)
                {
                    int pair = (s[i] << 8) | s[i + 1];
                    counts[pair]++;
                    if (best < 0 || counts[pair] > counts[best] || (counts[pair] == counts[best] && pair < best))
                    {
                        best = pair;
                    }
                }
            }

            if (best < 0 || counts[best] < 2)
            {
                EmptyTokens++;
                continue;
            }

            int a = best >> 8;
            int b = best & 0xFF;
            tokens[slot] = [.. tokens[a], .. tokens[b]];
            foreach (List<int> s in seqs)
            {
                for (int i = 0; i + 1 < s.Count; i++)
                {
                    if (s[i] == a && s[i + 1] == b)
                    {
                        s[i] = slot;
                        s.RemoveAt(i + 1);
                    }
                }
            }
        }

        return ([.. seqs.Select(s => s.Select(x => (byte)x).ToArray())], tokens);
    }

    /// <summary>A realistic symbol set around <paramref name="text"/>: every digit used, some long names, per-CPU absolute entries.</summary>
    public static List<(string Name, char Type, ulong Address)> SampleSymbols(ulong text, int count, int seed, bool percpu, int longNameLength = 320)
    {
        var r = new Random(seed);
        var list = new List<(string, char, ulong)>
        {
            ("_text", 'T', text),
            ("_stext", 'T', text),
        };
        if (percpu)
        {
            list.Add(("fixed_percpu_data", 'A', 0));
            list.Add(("cpu_number", 'A', 0x19160));
            list.Add(("current_task", 'A', 0x1fb80));
        }

        string[] words = ["init", "task", "sched", "mm", "page", "alloc", "free", "lock", "irq", "net", "dev", "btf", "kallsyms", "vfs", "read", "write", "core", "rcu"];
        ulong a = text + 0x1000;
        for (int i = 0; i < count; i++)
        {
            int parts = r.Next(1, 4);
            string name = string.Join("_", Enumerable.Range(0, parts).Select(_ => words[r.Next(words.Length)])) + "_" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            char type = "TtDdRrBb"[r.Next(8)];
            list.Add((name, type, a));
            a += (ulong)r.Next(0, 0x400);
        }

        // Long names (Rust-style mangling) to force 2-byte record lengths even after compression.
        for (int i = 0; i < 3; i++)
        {
            var sb = new StringBuilder("_RNvXs");
            for (int k = 0; k < longNameLength; k++)
            {
                sb.Append((char)('a' + r.Next(26)));
            }

            list.Add((sb.ToString(), 't', a));
            a += 0x40;
        }

        list.Add(("linux_banner", 'D', a + 0x100));
        list.Add(("_end", 'B', a + 0x10000));
        return list;
    }

    /// <summary>Writes a little-endian u64 (for tests that patch images).</summary>
    public static void PutU64(byte[] b, int at, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(at), v);
}
