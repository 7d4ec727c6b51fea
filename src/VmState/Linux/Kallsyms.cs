using System.Buffers.Binary;
using System.Collections;
using System.Text;
using VmState.Arch.X86;

namespace VmState.Linux;

/// <summary>
/// The kernel's own symbol table, decoded from the kallsyms tables in guest memory (Linux <c>scripts/kallsyms.c</c>,
/// <c>kernel/kallsyms.c</c>): the same entries as the guest's <c>/proc/kallsyms</c> without modules. Lookups by name
/// (hash index built on first use) and by address (nearest symbol at or below), enumeration in table (address) order.
/// </summary>
public sealed class Kallsyms : IReadOnlyList<KernelSymbol>
{
    /// <summary>Name lookups answered by a linear scan before the hash index is built.</summary>
    private const int LinearLookups = 16;

    /// <summary>Largest region read for the tables when their addresses are known (VMCOREINFO).</summary>
    private const int MaxTableRegion = 64 << 20;

    private readonly byte[] _blob;
    private readonly int[] _nameAt;
    private readonly ulong[] _addresses;
    private readonly object _indexLock = new();
    private int[]? _hashHeads;
    private int[]? _hashNext;
    private int _linearLookups;

    internal Kallsyms(byte[] blob, int[] nameAt, ulong[] addresses, KallsymsLayout layout)
    {
        _blob = blob;
        _nameAt = nameAt;
        _addresses = addresses;
        Layout = layout;
    }

    /// <summary>Where the tables were and how they were decoded.</summary>
    public KallsymsLayout Layout { get; }

    /// <summary>Number of symbols.</summary>
    public int Count => _addresses.Length;

    /// <summary>The symbol at <paramref name="index"/> in table order (ascending address).</summary>
    public KernelSymbol this[int index] => new(NameAt(index), _addresses[index], TypeAt(index));

    /// <summary>
    /// Decodes the tables whose addresses VMCOREINFO gives (Linux 6.0+, commits 5fd8fea935a10 and f09bddbd86619:
    /// <c>SYMBOL(kallsyms_names)</c>, <c>_num_syms</c>, <c>_token_table</c>, <c>_token_index</c>, <c>_offsets</c> and
    /// <c>_relative_base</c>, or <c>_addresses</c>). Returns null when the note lacks them. The address encoding is
    /// chosen by decoding <paramref name="knownName"/> and comparing it with <paramref name="knownValue"/> (drgn
    /// <c>libdrgn/kallsyms.c</c> does the same with <c>_stext</c>).
    /// </summary>
    /// <exception cref="KernelDataException">The tables are there but fail their consistency checks.</exception>
    public static Kallsyms? FromVmcoreinfo(AddressSpace kernel, Vmcoreinfo info, string? knownName, ulong? knownValue)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(info);
        return FromVmcoreinfo(kernel.Read, (address, length) => ReadZeroFilled(kernel, address, length), info, knownName, knownValue);
    }

    /// <summary>
    /// <see cref="FromVmcoreinfo(AddressSpace, Vmcoreinfo, string?, ulong?)"/> over any kernel memory: <paramref name="read"/>
    /// reads virtual memory, <paramref name="region"/> a range with unmapped pages as zeros.
    /// </summary>
    internal static Kallsyms? FromVmcoreinfo(ReadVirtual read, Func<ulong, int, byte[]> region, Vmcoreinfo info, string? knownName, ulong? knownValue)
    {
        if (info.Symbol("kallsyms_num_syms") is not ulong numSyms || info.Symbol("kallsyms_names") is not ulong names
            || info.Symbol("kallsyms_token_table") is not ulong tokenTable || info.Symbol("kallsyms_token_index") is not ulong tokenIndex)
        {
            return null;
        }

        ulong? offsets = info.Symbol("kallsyms_offsets");
        ulong? relativeBase = info.Symbol("kallsyms_relative_base");
        ulong? absolute = info.Symbol("kallsyms_addresses");
        if (offsets is null && absolute is null)
        {
            return null;
        }

        Span<byte> word = stackalloc byte[4];
        if (read(numSyms, word) != 4)
        {
            throw new KernelDataException(numSyms, "kallsyms_num_syms (from VMCOREINFO)", "not mapped in the kernel page tables");
        }

        uint count = BinaryPrimitives.ReadUInt32LittleEndian(word);
        if (count is 0 or > KallsymsDecoder.MaxSymbols)
        {
            throw new KernelDataException(numSyms, "kallsyms_num_syms (from VMCOREINFO)", $"{count} is not a plausible symbol count");
        }

        ulong table = offsets ?? absolute!.Value;
        ulong tableEnd = table + (count * (offsets is null ? 8UL : 4UL));
        ulong lo = Min(Min(numSyms, names), Min(Min(tokenTable, tokenIndex), Min(table, relativeBase ?? table)));
        ulong hi = Max(Max(numSyms + 8, tokenIndex + 512), Max(tableEnd, (relativeBase ?? 0) + 8));
        if (hi - lo > MaxTableRegion)
        {
            throw new KernelDataException(lo, "kallsyms tables (from VMCOREINFO)", $"they span {hi - lo} bytes, more than the {MaxTableRegion}-byte limit");
        }

        byte[] buf = region(lo, (int)(hi - lo));
        var at = new KallsymsDecoder.Positions((int)(numSyms - lo), (int)(names - lo), (int)(tokenTable - lo), (int)(tokenIndex - lo), -1, -1);
        int tableAt = (int)(table - lo);
        string order = table < numSyms ? "pre-6.4" : "6.4+";
        KallsymsDecoder.AddressCandidate[] candidates = absolute is not null && offsets is null
            ? [new(order, KallsymsAddressEncoding.Absolute, tableAt, -1)]
            : relativeBase is ulong rb
                ? [new(order, KallsymsAddressEncoding.AbsolutePercpu, tableAt, (int)(rb - lo)), new(order, KallsymsAddressEncoding.BaseRelative, tableAt, (int)(rb - lo))]
                : [new(order, KallsymsAddressEncoding.PlaceRelative, tableAt, -1)];
        (string, ulong)? known = knownName is not null && knownValue is ulong kv ? (knownName, kv) : null;
        return KallsymsDecoder.Decode(buf, lo, bufferIsVirtual: true, at, candidates, known, "VMCOREINFO", out string failure)
            ?? throw new KernelDataException(names, "kallsyms tables (from VMCOREINFO)", failure);
    }

    /// <summary>
    /// These symbols and <paramref name="extra"/> (data symbols a kernel without CONFIG_KALLSYMS_ALL lacks, found
    /// another way) as one table sorted by address, keeping this table's layout with <paramref name="source"/> noted.
    /// </summary>
    internal Kallsyms WithSymbols(IEnumerable<(string Name, char Type, ulong Address)> extra, string source)
    {
        var all = new List<(string Name, char Type, ulong Address)>(Count);
        for (int i = 0; i < Count; i++)
        {
            all.Add((NameAt(i), TypeAt(i), _addresses[i]));
        }

        all.AddRange(extra);
        Kallsyms merged = FromList(all, source);
        return new Kallsyms(merged._blob, merged._nameAt, merged._addresses, Layout with { Source = $"{Layout.Source}; {source}" });
    }

    /// <summary>Reads kernel virtual memory into a span; returns the bytes read.</summary>
    internal delegate int ReadVirtual(ulong address, Span<byte> destination);

    /// <summary>A symbol table from a list (a System.map file, already relocated), sorted by address.</summary>
    public static Kallsyms FromList(IEnumerable<(string Name, char Type, ulong Address)> symbols, string source)
    {
        ArgumentNullException.ThrowIfNull(symbols);
        var sorted = symbols.OrderBy(x => x.Address).ToList();
        var blob = new List<byte>();
        int[] nameAt = new int[sorted.Count + 1];
        ulong[] addresses = new ulong[sorted.Count];
        for (int i = 0; i < sorted.Count; i++)
        {
            nameAt[i] = blob.Count;
            blob.Add((byte)sorted[i].Type);
            blob.AddRange(Encoding.Latin1.GetBytes(sorted[i].Name));
            addresses[i] = sorted[i].Address;
        }

        nameAt[^1] = blob.Count;
        var layout = new KallsymsLayout
        {
            Source = source,
            NumSyms = 0,
            Names = 0,
            Markers = 0,
            TokenTable = 0,
            TokenIndex = 0,
            AddressTable = 0,
            Encoding = KallsymsAddressEncoding.Absolute,
            BigLengths = false,
            Order = "list",
        };
        return new Kallsyms([.. blob], nameAt, addresses, layout);
    }

    /// <summary>
    /// Finds and decodes the tables by their structure in <paramref name="image"/> (the kernel image read through the
    /// page tables, or a window of raw physical memory): token-table signature, token index, markers, num_syms and
    /// names, then the address table (see <c>profile-free-linux.md</c> §2.3; the same signature as
    /// vmlinux-to-elf <c>kallsyms.py</c>). <paramref name="imageAddress"/> is the address of <c>image[0]</c>;
    /// <paramref name="imageIsVirtual"/> says whether it is virtual (needed for place-relative offsets).
    /// </summary>
    /// <exception cref="KernelDataException">No table set passes the checks.</exception>
    public static Kallsyms Scan(ReadOnlySpan<byte> image, ulong imageAddress, bool imageIsVirtual, string? knownName, ulong? knownValue) =>
        KallsymsScanner.Scan(image, imageAddress, imageIsVirtual, knownName is not null && knownValue is ulong kv ? (knownName, kv) : null);

    /// <summary>The name of the symbol at <paramref name="index"/>.</summary>
    public string NameAt(int index)
    {
        int s = _nameAt[index] + 1;
        return Encoding.Latin1.GetString(_blob, s, _nameAt[index + 1] - s);
    }

    /// <summary>The address of the symbol at <paramref name="index"/>.</summary>
    public ulong AddressAt(int index) => _addresses[index];

    /// <summary>The type letter of the symbol at <paramref name="index"/>.</summary>
    public char TypeAt(int index) => (char)_blob[_nameAt[index]];

    /// <summary>The address of <paramref name="name"/> (the first global definition, else the first local one).</summary>
    public bool TryGetAddress(string name, out ulong address)
    {
        int i = IndexOf(name);
        address = i >= 0 ? _addresses[i] : 0;
        return i >= 0;
    }

    /// <summary>The address of <paramref name="name"/>, or throws naming it.</summary>
    /// <exception cref="KernelDataException">The symbol is not in kallsyms.</exception>
    public ulong AddressOf(string name) => TryGetAddress(name, out ulong a) ? a
        : throw new KernelDataException("kallsyms", $"no symbol named '{name}' among {Count} symbols");

    /// <summary>The symbol named <paramref name="name"/> (the first global definition, else the first local one), or null.</summary>
    public KernelSymbol? Find(string name)
    {
        int i = IndexOf(name);
        return i >= 0 ? this[i] : null;
    }

    /// <summary>Every symbol named <paramref name="name"/> (static functions and variables may repeat), in table order.</summary>
    public IEnumerable<KernelSymbol> FindAll(string name)
    {
        var found = new List<KernelSymbol>();
        int h = Bucket(name, out byte[]? key);
        if (key is null)
        {
            return found;
        }

        EnsureIndex();
        for (int i = _hashHeads![h]; i >= 0; i = _hashNext![i])
        {
            if (NameEquals(i, key))
            {
                found.Add(this[i]);
            }
        }

        found.Sort((a, b) => a.Address.CompareTo(b.Address));
        return found;
    }

    /// <summary>
    /// The symbol whose address is the greatest one at or below <paramref name="address"/>, and the distance from it;
    /// false when <paramref name="address"/> is below every symbol or more than <paramref name="maxOffset"/> past
    /// the nearest one (sizes are not stored; drgn caps guessed sizes at 64 KiB for the same reason).
    /// </summary>
    public bool TrySymbolize(ulong address, out KernelSymbol symbol, out ulong offset, ulong maxOffset = 0x10000)
    {
        int lo = 0;
        int hi = _addresses.Length - 1;
        int best = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_addresses[mid] <= address)
            {
                best = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        if (best < 0 || address - _addresses[best] > maxOffset)
        {
            symbol = default;
            offset = 0;
            return false;
        }

        // Several symbols can share an address; report the first, as kernel/kallsyms.c get_symbol_pos does.
        while (best > 0 && _addresses[best - 1] == _addresses[best])
        {
            best--;
        }

        symbol = this[best];
        offset = address - symbol.Address;
        return true;
    }

    /// <summary>"symbol+0xoff" for <paramref name="address"/>, or the bare hex address.</summary>
    public string Describe(ulong address) => TrySymbolize(address, out KernelSymbol s, out ulong off)
        ? off == 0 ? s.Name : $"{s.Name}+0x{off:x}"
        : $"0x{address:x}";

    /// <inheritdoc />
    public IEnumerator<KernelSymbol> GetEnumerator()
    {
        for (int i = 0; i < _addresses.Length; i++)
        {
            yield return this[i];
        }
    }

    /// <inheritdoc />
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static byte[] ReadZeroFilled(AddressSpace space, ulong address, int length)
    {
        byte[] buf = new byte[length];
        int done = 0;
        while (done < length)
        {
            ulong va = address + (ulong)done;
            int n = (int)Math.Min((ulong)(length - done), 0x1000 - (va & 0xFFF));
            if (space.TryTranslate(va, out ulong pa))
            {
                space.Memory.Read(pa, buf.AsSpan(done, n));
            }

            done += n;
        }

        return buf;
    }

    private static ulong Min(ulong a, ulong b) => a < b ? a : b;

    private static ulong Max(ulong a, ulong b) => a > b ? a : b;

    private int IndexOf(string name)
    {
        int h = Bucket(name, out byte[]? key);
        if (key is null)
        {
            return -1;
        }

        // A handful of lookups (all a process listing needs) cost less as scans than building the hash index.
        if (_hashNext is null && Interlocked.Increment(ref _linearLookups) <= LinearLookups)
        {
            return Scan(key);
        }

        EnsureIndex();
        int found = -1;
        for (int i = _hashHeads![h]; i >= 0; i = _hashNext![i])
        {
            if (NameEquals(i, key))
            {
                if (TypeAt(i) is >= 'A' and <= 'Z')
                {
                    return i;
                }

                found = found < 0 || i < found ? i : found;
            }
        }

        return found;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private int Scan(byte[] key)
    {
        int found = -1;
        for (int i = 0; i < _addresses.Length; i++)
        {
            int s = _nameAt[i] + 1;
            if (_nameAt[i + 1] - s == key.Length && _blob[s] == key[0] && _blob.AsSpan(s, key.Length).SequenceEqual(key))
            {
                if (TypeAt(i) is >= 'A' and <= 'Z')
                {
                    return i;
                }

                found = found < 0 ? i : found;
            }
        }

        return found;
    }

    private bool NameEquals(int i, byte[] key)
    {
        int s = _nameAt[i] + 1;
        return _nameAt[i + 1] - s == key.Length && _blob.AsSpan(s, key.Length).SequenceEqual(key);
    }

    private int Bucket(string name, out byte[]? key)
    {
        key = null;
        foreach (char c in name)
        {
            if (c > 0xFF)
            {
                return 0;
            }
        }

        key = Encoding.Latin1.GetBytes(name);
        return Hash(key) & (TableSize - 1);
    }

    private int TableSize => (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, _addresses.Length * 2));

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static int Hash(ReadOnlySpan<byte> s)
    {
        // Eight bytes at a time, multiply-xorshift mixing: names average ~20 bytes, so ~3 rounds each.
        ulong h = (ulong)s.Length * 0x9E37_79B9_7F4A_7C15UL;
        while (s.Length >= 8)
        {
            h = (h ^ BinaryPrimitives.ReadUInt64LittleEndian(s)) * 0xFF51_AFD7_ED55_8CCDUL;
            h ^= h >> 32;
            s = s[8..];
        }

        ulong tail = 0;
        for (int i = 0; i < s.Length; i++)
        {
            tail |= (ulong)s[i] << (8 * i);
        }

        h = (h ^ tail) * 0xC4CE_B9FE_1A85_EC53UL;
        h ^= h >> 29;
        return (int)(h & 0x7FFF_FFFF);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private void EnsureIndex()
    {
        if (Volatile.Read(ref _hashNext) is not null)
        {
            return;
        }

        lock (_indexLock)
        {
            if (_hashNext is not null)
            {
                return;
            }

            int size = TableSize;
            int[] heads = new int[size];
            Array.Fill(heads, -1);
            int[] next = new int[_addresses.Length];

            // Insert in reverse so each chain lists symbols in table order.
            for (int i = _addresses.Length - 1; i >= 0; i--)
            {
                int s = _nameAt[i] + 1;
                int h = Hash(_blob.AsSpan(s, _nameAt[i + 1] - s)) & (size - 1);
                next[i] = heads[h];
                heads[h] = i;
            }

            _hashHeads = heads;
            Volatile.Write(ref _hashNext, next);
        }
    }
}
