using System.Globalization;
using VmState.IO;

namespace VmState.Linux.Btf;

/// <summary>
/// The types of a BTF blob (Linux <c>include/uapi/linux/btf.h</c>, <c>Documentation/bpf/btf.rst</c>) and the
/// questions asked of them: a type by id or by name (C spellings included), sizes through typedefs and qualifiers,
/// member paths through anonymous struct/union members, enumerators, and pointer and array types made on the fly.
/// Supports split BTF (module BTF on top of vmlinux: ids and string offsets continue the base's). The blob itself is
/// checked and decoded by <see cref="BtfReader"/> (every count and reference; problems throw
/// <see cref="VmStateFormatException"/> with the offset in the blob); C spellings come from <see cref="BtfCSpelling"/>.
/// </summary>
public sealed class BtfTypes
{
    /// <summary>First id of types made by <see cref="PointerTo"/> and <see cref="ArrayOf"/> (far above any real id).</summary>
    public const int SyntheticIdBase = 1 << 30;

    private static readonly BtfType s_void = new(0, BtfKind.Void, "void", false, 0);

    private readonly BtfReader _reader;
    private readonly BtfNameIndex _names;
    private readonly object _lock = new();
    private readonly List<BtfType> _synthetic = [];
    private readonly Dictionary<string, int> _syntheticIndex = new(StringComparer.Ordinal);

    private BtfTypes(BtfReader reader, BtfTypes? baseTypes, BtfLimits limits)
    {
        _reader = reader;
        Base = baseTypes;
        Limits = limits;
        _names = new BtfNameIndex(reader);
    }

    /// <summary>The header.</summary>
    public BtfHeader Header => _reader.Header;

    /// <summary>The base BTF of split BTF (vmlinux under a module's BTF), or null.</summary>
    public BtfTypes? Base { get; }

    /// <summary>Id of the first type in this blob (1, or the base's <see cref="NextId"/> for split BTF).</summary>
    public int FirstId => _reader.FirstId;

    /// <summary>One past the last type id of this blob.</summary>
    public int NextId => _reader.NextId;

    /// <summary>Number of types in this blob (void and the base's types not counted).</summary>
    public int Count => _reader.Count;

    /// <summary>First string offset of this blob (0, or where the base's strings end for split BTF).</summary>
    public uint StringBase => _reader.StringBase;

    /// <summary>Size of the blob in bytes.</summary>
    public int Length => _reader.Length;

    /// <summary>The raw blob (header, types, strings), as the kernel keeps it: what <c>bpftool btf dump file</c> reads.</summary>
    public ReadOnlyMemory<byte> Data => _reader.Data;

    /// <summary>The caps this blob was parsed with (chain depths apply to every query).</summary>
    internal BtfLimits Limits { get; }

    /// <summary>Parses a BTF blob. <paramref name="baseTypes"/> makes it split BTF on top of that base.</summary>
    /// <exception cref="VmStateFormatException">The header, a record or the string section is malformed.</exception>
    public static BtfTypes Parse(byte[] data, BtfTypes? baseTypes = null, BtfLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        limits ??= BtfLimits.Default;
        return new BtfTypes(BtfReader.Parse(data, baseTypes?._reader, limits), baseTypes, limits);
    }

    /// <summary>The type with <paramref name="id"/> (0 is void).</summary>
    /// <exception cref="VmStateFormatException">The id does not exist or its record is malformed.</exception>
    public BtfType this[int id] => Get(id);

    /// <summary>The type with <paramref name="id"/> (0 is void).</summary>
    /// <exception cref="VmStateFormatException">The id does not exist or its record is malformed.</exception>
    public BtfType Get(int id)
    {
        if (id == 0)
        {
            return s_void;
        }

        if (id >= SyntheticIdBase)
        {
            lock (_lock)
            {
                int s = id - SyntheticIdBase;
                if (s < _synthetic.Count)
                {
                    return _synthetic[s];
                }
            }
        }
        else if (id < FirstId && Base is not null)
        {
            return Base.Get(id);
        }
        else if (id >= FirstId && id < NextId)
        {
            return _reader.Get(id);
        }

        throw new VmStateFormatException(0, "BTF", $"type id {id} does not exist (ids are 1..{NextId - 1})");
    }

    /// <summary>True when <paramref name="id"/> names a type (void included).</summary>
    public bool Contains(int id) => id == 0 || (id >= 1 && id < NextId) || (id >= SyntheticIdBase && id - SyntheticIdBase < _synthetic.Count);

    /// <summary>The kind of <paramref name="id"/> without materializing it.</summary>
    public BtfKind KindOf(int id)
    {
        if (id >= FirstId && id < NextId)
        {
            return _reader.KindAt(id - FirstId);
        }

        return Get(id).Kind;
    }

    /// <summary>The string at <paramref name="offset"/> of the string section (offsets below <see cref="StringBase"/> are the base's).</summary>
    /// <exception cref="VmStateFormatException">The offset is outside the section.</exception>
    public string StringAt(uint offset) => _reader.StringAt(offset);

    /// <summary>Count of this blob's types by kind.</summary>
    public IReadOnlyDictionary<BtfKind, int> KindCounts()
    {
        var counts = new Dictionary<BtfKind, int>();
        for (int i = 0; i < _reader.Count; i++)
        {
            BtfKind k = _reader.KindAt(i);
            counts[k] = counts.GetValueOrDefault(k) + 1;
        }

        return counts;
    }

    /// <summary>
    /// The id of the type named <paramref name="name"/> of kind <paramref name="kind"/>, searching this blob then the
    /// base; for STRUCT/UNION a complete definition is preferred over an empty one. 0 when there is none.
    /// </summary>
    public int Find(string name, BtfKind kind)
    {
        ArgumentNullException.ThrowIfNull(name);
        int id = _names.Find(name, kind);
        return id != 0 ? id : Base?.Find(name, kind) ?? 0;
    }

    /// <summary>The id of <c>struct <paramref name="name"/></c>, or 0.</summary>
    public int FindStruct(string name) => Find(name, BtfKind.Struct);

    /// <summary>
    /// Parses a C type spelling and returns its id: <c>struct task_struct</c>, <c>union thread_union</c>,
    /// <c>enum pid_type</c>, a typedef or base type name (<c>u64</c>, <c>unsigned long</c>, <c>char</c>), with any
    /// number of trailing <c>*</c> and <c>[N]</c> (pointer and array types not in the blob are made on the fly).
    /// </summary>
    /// <exception cref="VmStateNotFoundException">No such type (<see cref="VmStateObjectKind.Type"/>).</exception>
    public int FindType(string spelling)
    {
        ArgumentNullException.ThrowIfNull(spelling);
        string s = spelling.Trim();

        // Declarator suffixes bind from the right: "char *[4]" is an array of 4 (char *).
        if (s.EndsWith('*'))
        {
            return PointerTo(FindType(s[..^1]));
        }

        int open = s.LastIndexOf('[');
        if (s.EndsWith(']') && open > 0
            && uint.TryParse(s.AsSpan(open + 1, s.Length - open - 2), NumberStyles.None, CultureInfo.InvariantCulture, out uint length))
        {
            return ArrayOf(FindType(s[..open]), length);
        }

        int id = BaseTypeId(s);
        if (id == 0 && s != "void")
        {
            throw new VmStateNotFoundException(VmStateObjectKind.Type, s, $"no type '{s}' in the BTF");
        }

        return id;
    }

    /// <summary>A pointer type to <paramref name="target"/>: the blob's own when it has one, else a synthetic one.</summary>
    public int PointerTo(int target) => Synthetic(target, 0, array: false);

    /// <summary>An array type of <paramref name="length"/> elements of <paramref name="element"/> (synthetic).</summary>
    public int ArrayOf(int element, uint length) => Synthetic(element, length, array: true);

    /// <summary>Strips typedefs, qualifiers (const, volatile, restrict) and type tags.</summary>
    /// <exception cref="VmStateFormatException">The chain is longer than the limit (a loop).</exception>
    public BtfType Resolve(int id)
    {
        for (int depth = 0; depth <= Limits.MaxChainDepth; depth++)
        {
            BtfType t = Get(id);
            if (t.Kind is not (BtfKind.Typedef or BtfKind.Const or BtfKind.Volatile or BtfKind.Restrict or BtfKind.TypeTag))
            {
                return t;
            }

            id = t.ReferencedType;
        }

        throw ChainTooLong(id);
    }

    /// <summary>sizeof the type, through typedefs, qualifiers and arrays (pointers are 8 bytes: x86-64).</summary>
    /// <exception cref="ArgumentException">The type has no size (void, a function, a forward declaration).</exception>
    /// <exception cref="VmStateFormatException">A chain loops or an array size overflows.</exception>
    public ulong SizeOf(int id)
    {
        ulong multiplier = 1;
        for (int depth = 0; depth <= Limits.MaxChainDepth; depth++)
        {
            BtfType t = Resolve(id);
            switch (t.Kind)
            {
                case BtfKind.Int or BtfKind.Enum or BtfKind.Enum64 or BtfKind.Struct or BtfKind.Union or BtfKind.Float or BtfKind.DataSection:
                    return Multiply(multiplier, t.Size, id);
                case BtfKind.Pointer:
                    return Multiply(multiplier, 8, id);
                case BtfKind.Array:
                    multiplier = Multiply(multiplier, t.ArrayInfo!.Value.Length, id);
                    id = t.ArrayInfo.Value.ElementType;
                    continue;
                case BtfKind.Variable:
                    id = t.ReferencedType;
                    continue;
                default:
                    throw new ArgumentException($"type {Describe(t)} has no size");
            }
        }

        throw ChainTooLong(id);
    }

    /// <summary>
    /// Where the member path lands inside <paramref name="typeId"/> (through typedefs): dotted names, searched through
    /// anonymous struct/union members as C does, and <c>[N]</c> array indices, e.g. <c>se.load.weight</c>,
    /// <c>cpus_mask.bits[0]</c>. Null when a name is not found.
    /// </summary>
    /// <exception cref="ArgumentException">The path is malformed or indexes/names into a type that has no members.</exception>
    public BtfMemberLocation? FindMember(int typeId, string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        ulong bits = 0;
        int current = typeId;
        uint bitfield = 0;
        int i = 0;
        while (i < path.Length)
        {
            if (path[i] == '[')
            {
                int close = path.IndexOf(']', i);
                if (close < 0 || !ulong.TryParse(path.AsSpan(i + 1, close - i - 1), NumberStyles.None, CultureInfo.InvariantCulture, out ulong index))
                {
                    throw new ArgumentException($"member path '{path}': malformed index at {i}", nameof(path));
                }

                BtfType array = Resolve(current);
                if (array.Kind != BtfKind.Array)
                {
                    throw new ArgumentException($"member path '{path}': {Describe(array)} is not an array", nameof(path));
                }

                BtfArrayInfo info = array.ArrayInfo!.Value;
                if (info.Length != 0 && index >= info.Length)
                {
                    throw new ArgumentException($"member path '{path}': index {index} is past the {info.Length} elements of {TypeName(array.Id)}", nameof(path));
                }

                bits += index * SizeOf(info.ElementType) * 8;
                current = info.ElementType;
                bitfield = 0;
                i = close + 1;
                if (i < path.Length && path[i] == '.')
                {
                    i++;
                }

                continue;
            }

            int end = path.IndexOfAny(['.', '['], i);
            if (end < 0)
            {
                end = path.Length;
            }

            string name = path[i..end];
            if (name.Length == 0)
            {
                throw new ArgumentException($"member path '{path}': empty name at {i}", nameof(path));
            }

            BtfType container = Resolve(current);
            if (!container.IsComposite)
            {
                throw new ArgumentException($"member path '{path}': {Describe(container)} has no members (is '{name}' behind a pointer?)", nameof(path));
            }

            if (FindDirect(container, name, 0) is not (ulong off, int type, uint size))
            {
                return null;
            }

            bits += off;
            current = type;
            bitfield = size;
            i = end < path.Length && path[end] == '.' ? end + 1 : end;
        }

        return new BtfMemberLocation(bits, current, bitfield);
    }

    /// <summary>Like <see cref="FindMember"/> but throws naming the type and path when the member is missing.</summary>
    /// <exception cref="ArgumentException">No such member.</exception>
    public BtfMemberLocation Member(int typeId, string path) => FindMember(typeId, path)
        ?? throw new ArgumentException($"{TypeName(typeId)} has no member '{path}'", nameof(path));

    /// <summary>The enumerator named <paramref name="name"/> (from any ENUM/ENUM64), e.g. <c>PIDTYPE_PID</c>.</summary>
    public bool TryGetEnumerator(string name, out long value)
    {
        if (_names.TryGetEnumerator(name, out value))
        {
            return true;
        }

        if (Base is not null)
        {
            return Base.TryGetEnumerator(name, out value);
        }

        value = 0;
        return false;
    }

    /// <summary>The C spelling of a type: <c>struct list_head *</c>, <c>char [16]</c>, <c>void (*)(int)</c>.</summary>
    public string TypeName(int id) => Declaration(id, string.Empty);

    /// <summary>A C declaration of <paramref name="name"/> with the type: <c>char comm[16]</c>, <c>void (*fn)(struct rcu_head *)</c>.</summary>
    public string Declaration(int id, string name) => BtfCSpelling.Declaration(this, id, name);

    internal VmStateFormatException ChainTooLong(int id) =>
        new(0, $"BTF type #{id}", $"typedef/qualifier/array chain longer than {Limits.MaxChainDepth} (a reference loop?)");

    private static ulong Multiply(ulong a, ulong b, int id)
    {
        ulong r = a * b;
        if (b != 0 && (r / b != a || r > long.MaxValue))
        {
            throw new VmStateFormatException(0, $"BTF type #{id}", "array size overflows");
        }

        return r;
    }

    private int Synthetic(int target, uint length, bool array)
    {
        if (!Contains(target))
        {
            throw new ArgumentException($"type id {target} does not exist", nameof(target));
        }

        lock (_lock)
        {
            string key = array ? $"{target}[{length}]" : $"{target}*";
            if (_syntheticIndex.TryGetValue(key, out int known))
            {
                return known;
            }

            int id = SyntheticIdBase + _synthetic.Count;
            BtfType t = array
                ? new BtfType(id, BtfKind.Array, string.Empty, false, 0) { ArrayInfo = new BtfArrayInfo(target, 0, length) }
                : new BtfType(id, BtfKind.Pointer, string.Empty, false, 0) { ReferencedType = target };
            _synthetic.Add(t);
            _syntheticIndex[key] = id;
            return id;
        }
    }

    private int BaseTypeId(string s)
    {
        if (s == "void")
        {
            return 0;
        }

        foreach ((string prefix, BtfKind kind) in new[] { ("struct ", BtfKind.Struct), ("union ", BtfKind.Union), ("enum ", BtfKind.Enum) })
        {
            if (s.StartsWith(prefix, StringComparison.Ordinal))
            {
                return Find(s[prefix.Length..].Trim(), kind);
            }
        }

        // BTF spells base types the way DWARF does ("long unsigned int"); accept the usual C spellings too.
        string canonical = s switch
        {
            "unsigned long" or "unsigned long int" => "long unsigned int",
            "long" or "signed long" => "long int",
            "unsigned long long" or "unsigned long long int" => "long long unsigned int",
            "long long" => "long long int",
            "unsigned" => "unsigned int",
            "short" => "short int",
            "unsigned short" => "short unsigned int",
            "bool" => "_Bool",
            _ => s,
        };
        int id = Find(canonical, BtfKind.Int);
        if (id == 0)
        {
            id = Find(canonical, BtfKind.Typedef);
        }

        if (id == 0)
        {
            id = Find(canonical, BtfKind.Float);
        }

        return id;
    }

    private (ulong BitOffset, int TypeId, uint BitfieldSize)? FindDirect(BtfType container, string name, int depth)
    {
        if (depth > Limits.MaxAnonymousDepth)
        {
            throw new VmStateFormatException(0, $"BTF type #{container.Id}", $"anonymous members nested deeper than {Limits.MaxAnonymousDepth} (a loop?)");
        }

        foreach (BtfMember m in container.Members)
        {
            if (m.Name == name)
            {
                return (m.BitOffset, m.TypeId, m.BitfieldSize);
            }
        }

        // C11 anonymous structs/unions: their members belong to the container (task_struct and mm_struct use them a lot).
        foreach (BtfMember m in container.Members)
        {
            if (m.IsAnonymous && Resolve(m.TypeId) is { IsComposite: true } inner && FindDirect(inner, name, depth + 1) is (ulong off, int type, uint size))
            {
                return (m.BitOffset + off, type, size);
            }
        }

        return null;
    }

    private string Describe(BtfType t) => $"{TypeName(t.Id)} (#{t.Id}, {t.Kind})";
}
