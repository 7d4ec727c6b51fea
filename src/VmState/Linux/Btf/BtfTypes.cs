using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using VmState.IO;

namespace VmState.Linux.Btf;

/// <summary>
/// A parsed BTF blob (Linux <c>include/uapi/linux/btf.h</c>, <c>Documentation/bpf/btf.rst</c>): one pass records
/// where each type starts and indexes named types; records are materialized into <see cref="BtfType"/> on first use.
/// Supports split BTF (module BTF on top of vmlinux: ids and string offsets continue the base's). Resolves sizes
/// through typedefs and qualifiers and member paths through anonymous struct/union members. Every count and
/// reference read from the blob is checked; problems throw <see cref="VmStateFormatException"/> with the offset in
/// the blob.
/// </summary>
public sealed class BtfTypes
{
    /// <summary>First id of types made by <see cref="PointerTo"/> and <see cref="ArrayOf"/> (far above any real id).</summary>
    public const int SyntheticIdBase = 1 << 30;

    private const ushort Magic = 0xEB9F;
    private const int RecordHeader = 12;

    /// <summary>Bits of btf_type.info that may be set: vlen 0–15, kind 24–28, kind_flag 31 (kernel/bpf/btf.c BTF_INFO_MASK).</summary>
    private const uint InfoMask = 0x9F00_FFFF;

    private static readonly BtfType s_void = new(0, BtfKind.Void, "void", false, 0);

    private readonly byte[] _data;
    private readonly int[] _records;
    private readonly int _stringStart;
    private readonly int _stringLength;
    private readonly BtfType?[] _cache;
    private readonly Dictionary<string, int>[] _byKind;
    private readonly BtfLimits _limits;
    private readonly object _lock = new();
    private readonly List<BtfType> _synthetic = [];
    private readonly Dictionary<string, int> _syntheticIndex = new(StringComparer.Ordinal);
    private Dictionary<string, int>? _functions;
    private Dictionary<string, (int TypeId, long Value)>? _enumerators;

    private BtfTypes(byte[] data, BtfHeader header, BtfTypes? baseTypes, int[] records, int stringStart, int stringLength, BtfLimits limits)
    {
        _data = data;
        Header = header;
        Base = baseTypes;
        _records = records;
        _stringStart = stringStart;
        _stringLength = stringLength;
        _limits = limits;
        FirstId = baseTypes?.NextId ?? 1;
        StringBase = baseTypes is null ? 0 : baseTypes.StringBase + (uint)baseTypes._stringLength;
        _cache = new BtfType?[records.Length];
        _byKind = new Dictionary<string, int>[20];
        foreach (BtfKind k in new[] { BtfKind.Int, BtfKind.Struct, BtfKind.Union, BtfKind.Enum, BtfKind.Typedef, BtfKind.Variable, BtfKind.DataSection, BtfKind.Float, BtfKind.Enum64 })
        {
            _byKind[(int)k] = new Dictionary<string, int>(StringComparer.Ordinal);
        }

        BuildNameIndex();
    }

    /// <summary>The header.</summary>
    public BtfHeader Header { get; }

    /// <summary>The base BTF of split BTF (vmlinux under a module's BTF), or null.</summary>
    public BtfTypes? Base { get; }

    /// <summary>Id of the first type in this blob (1, or the base's <see cref="NextId"/> for split BTF).</summary>
    public int FirstId { get; }

    /// <summary>One past the last type id of this blob.</summary>
    public int NextId => FirstId + _records.Length;

    /// <summary>Number of types in this blob (void and the base's types not counted).</summary>
    public int Count => _records.Length;

    /// <summary>First string offset of this blob (0, or where the base's strings end for split BTF).</summary>
    public uint StringBase { get; }

    /// <summary>Size of the blob in bytes.</summary>
    public int Length => _data.Length;

    /// <summary>Parses a BTF blob. <paramref name="baseTypes"/> makes it split BTF on top of that base.</summary>
    /// <exception cref="VmStateFormatException">The header, a record or the string section is malformed.</exception>
    public static BtfTypes Parse(byte[] data, BtfTypes? baseTypes = null, BtfLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        limits ??= BtfLimits.Default;
        if (data.Length > limits.MaxBlobSize)
        {
            throw new VmStateFormatException(0, "BTF", $"{data.Length} bytes is more than the {limits.MaxBlobSize}-byte limit");
        }

        if (data.Length < 24)
        {
            throw new VmStateFormatException(0, "BTF header", $"{data.Length} bytes is shorter than the 24-byte header");
        }

        ushort magic = BinaryPrimitives.ReadUInt16LittleEndian(data);
        if (magic != Magic)
        {
            throw new VmStateFormatException(0, "BTF header", magic == 0x9FEB
                ? "magic 0xeb9f is byte-swapped: big-endian BTF is not supported"
                : $"magic 0x{magic:x4}, expected 0xeb9f");
        }

        var header = new BtfHeader(data[2], data[3], U32(data, 4), U32(data, 8), U32(data, 12), U32(data, 16), U32(data, 20));
        if (header.Version != 1)
        {
            throw new VmStateFormatException(2, "BTF header", $"version {header.Version}, expected 1");
        }

        if (header.HeaderLength < 24 || header.HeaderLength > (uint)data.Length)
        {
            throw new VmStateFormatException(4, "BTF header", $"hdr_len {header.HeaderLength} is outside 24..{data.Length}");
        }

        ulong typeStart = header.HeaderLength + (ulong)header.TypeOffset;
        ulong typeEnd = typeStart + header.TypeLength;
        ulong stringStart = header.HeaderLength + (ulong)header.StringOffset;
        ulong stringEnd = stringStart + header.StringLength;
        if (typeEnd > (ulong)data.Length || stringEnd > (ulong)data.Length)
        {
            throw new VmStateFormatException(8, "BTF header", $"type section [{typeStart}, {typeEnd}) or string section [{stringStart}, {stringEnd}) runs past the {data.Length}-byte blob");
        }

        if (typeStart < stringEnd && stringStart < typeEnd)
        {
            throw new VmStateFormatException(8, "BTF header", $"type section [{typeStart}, {typeEnd}) and string section [{stringStart}, {stringEnd}) overlap");
        }

        // kernel/bpf/btf.c btf_parse_str_sec: the section ends with a NUL; a base blob starts with the empty string.
        if (header.StringLength == 0 ? baseTypes is null : data[(int)stringEnd - 1] != 0 || (baseTypes is null && data[(int)stringStart] != 0))
        {
            throw new VmStateFormatException((long)stringStart, "BTF string section", "must start (base BTF) and end with a NUL byte");
        }

        int[] records = IndexRecords(data, (int)typeStart, (int)typeEnd, limits);
        return new BtfTypes(data, header, baseTypes, records, (int)stringStart, (int)header.StringLength, limits);
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
            return _cache[id - FirstId] ??= Materialize(id);
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
            return (BtfKind)((U32(_data, _records[id - FirstId] + 4) >> 24) & 0x1F);
        }

        return Get(id).Kind;
    }

    /// <summary>The string at <paramref name="offset"/> of the string section (offsets below <see cref="StringBase"/> are the base's).</summary>
    /// <exception cref="VmStateFormatException">The offset is outside the section.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public string StringAt(uint offset)
    {
        if (offset < StringBase && Base is not null)
        {
            return Base.StringAt(offset);
        }

        uint local = offset - StringBase;
        if (offset < StringBase || local >= (uint)_stringLength)
        {
            throw new VmStateFormatException(_stringStart, "BTF string section", $"string offset {offset} is outside [{StringBase}, {StringBase + (uint)_stringLength})");
        }

        ReadOnlySpan<byte> s = _data.AsSpan(_stringStart + (int)local, _stringLength - (int)local);
        int nul = s.IndexOf((byte)0);
        return Encoding.UTF8.GetString(s[..nul]);
    }

    /// <summary>Count of this blob's types by kind.</summary>
    public IReadOnlyDictionary<BtfKind, int> KindCounts()
    {
        var counts = new Dictionary<BtfKind, int>();
        foreach (int r in _records)
        {
            var k = (BtfKind)((U32(_data, r + 4) >> 24) & 0x1F);
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
        int id = 0;
        if (kind == BtfKind.Function)
        {
            EnsureFunctionIndex();
            id = _functions!.GetValueOrDefault(name);
        }
        else if ((int)kind < _byKind.Length && _byKind[(int)kind] is Dictionary<string, int> d)
        {
            id = d.GetValueOrDefault(name);
        }

        if (id == 0 && kind == BtfKind.Enum)
        {
            id = _byKind[(int)BtfKind.Enum64].GetValueOrDefault(name);
        }

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
        for (int depth = 0; depth <= _limits.MaxChainDepth; depth++)
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
        for (int depth = 0; depth <= _limits.MaxChainDepth; depth++)
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
        EnsureEnumeratorIndex();
        if (_enumerators!.TryGetValue(name, out (int TypeId, long Value) e))
        {
            value = e.Value;
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
    public string Declaration(int id, string name) => Format(id, name, 0);

    private static uint U32(byte[] data, int at) => BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(at));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int[] IndexRecords(byte[] data, int start, int end, BtfLimits limits)
    {
        var records = new List<int>(Math.Max(16, (end - start) / 24));
        int pos = start;
        while (pos < end)
        {
            if (records.Count >= limits.MaxTypes)
            {
                throw new VmStateFormatException(pos, "BTF type section", $"more than {limits.MaxTypes} types");
            }

            if (end - pos < RecordHeader)
            {
                throw new VmStateFormatException(pos, $"BTF type #{records.Count + 1}", $"{end - pos} bytes left, a record header needs 12");
            }

            uint info = U32(data, pos + 4);
            int vlen = (int)(info & 0xFFFF);
            int kind = (int)((info >> 24) & 0x1F);
            if ((info & ~InfoMask) != 0)
            {
                throw new VmStateFormatException(pos + 4, $"BTF type #{records.Count + 1}", $"info 0x{info:x8} sets bits outside vlen, kind and kind_flag (a newer BTF format?)");
            }

            long extra = kind switch
            {
                1 or 14 or 17 => 4,
                3 => 12,
                4 or 5 or 15 or 19 => 12L * vlen,
                6 or 13 => 8L * vlen,
                2 or 7 or 8 or 9 or 10 or 11 or 12 or 16 or 18 => 0,

                // The record size depends on the kind, so an unknown kind cannot be skipped.
                _ => throw new VmStateFormatException(pos + 4, $"BTF type #{records.Count + 1}", $"unknown kind {kind} (this reader knows kinds 1-19)"),
            };
            if (RecordHeader + extra > end - pos)
            {
                throw new VmStateFormatException(pos, $"BTF type #{records.Count + 1}", $"kind {(BtfKind)kind} with vlen {vlen} needs {RecordHeader + extra} bytes, {end - pos} left in the type section");
            }

            records.Add(pos);
            pos += RecordHeader + (int)extra;
        }

        return [.. records];
    }

    private static ulong Multiply(ulong a, ulong b, int id)
    {
        ulong r = a * b;
        if (b != 0 && (r / b != a || r > long.MaxValue))
        {
            throw new VmStateFormatException(0, $"BTF type #{id}", "array size overflows");
        }

        return r;
    }

    private VmStateFormatException ChainTooLong(int id) =>
        new(0, $"BTF type #{id}", $"typedef/qualifier/array chain longer than {_limits.MaxChainDepth} (a reference loop?)");

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void BuildNameIndex()
    {
        for (int i = 0; i < _records.Length; i++)
        {
            int r = _records[i];
            uint nameOff = U32(_data, r);
            uint info = U32(_data, r + 4);
            int kind = (int)((info >> 24) & 0x1F);
            if (nameOff == 0 || _byKind[kind] is not Dictionary<string, int> d)
            {
                continue;
            }

            string name = StringAt(nameOff);
            int id = FirstId + i;
            if (!d.TryGetValue(name, out int existing))
            {
                d[name] = id;
            }
            else if (kind is 4 or 5 && (U32(_data, _records[existing - FirstId] + 4) & 0xFFFF) == 0 && (info & 0xFFFF) != 0)
            {
                // Prefer a definition with members over an empty one of the same name.
                d[name] = id;
            }
        }
    }

    private void EnsureFunctionIndex()
    {
        if (Volatile.Read(ref _functions) is not null)
        {
            return;
        }

        var d = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < _records.Length; i++)
        {
            int r = _records[i];
            if (((U32(_data, r + 4) >> 24) & 0x1F) == (int)BtfKind.Function && U32(_data, r) != 0)
            {
                d.TryAdd(StringAt(U32(_data, r)), FirstId + i);
            }
        }

        Volatile.Write(ref _functions, d);
    }

    private void EnsureEnumeratorIndex()
    {
        if (Volatile.Read(ref _enumerators) is not null)
        {
            return;
        }

        var d = new Dictionary<string, (int, long)>(StringComparer.Ordinal);
        for (int i = 0; i < _records.Length; i++)
        {
            BtfKind k = (BtfKind)((U32(_data, _records[i] + 4) >> 24) & 0x1F);
            if (k is BtfKind.Enum or BtfKind.Enum64)
            {
                foreach (BtfEnumValue v in Get(FirstId + i).EnumValues)
                {
                    d.TryAdd(v.Name, (FirstId + i, v.Value));
                }
            }
        }

        Volatile.Write(ref _enumerators, d);
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
        if (depth > _limits.MaxAnonymousDepth)
        {
            throw new VmStateFormatException(0, $"BTF type #{container.Id}", $"anonymous members nested deeper than {_limits.MaxAnonymousDepth} (a loop?)");
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

    private string Format(int id, string inner, int depth)
    {
        if (depth > _limits.MaxChainDepth)
        {
            throw ChainTooLong(id);
        }

        BtfType t = Get(id);
        switch (t.Kind)
        {
            case BtfKind.Pointer:
                {
                    BtfKind target = Get(t.ReferencedType).Kind;
                    string p = "*" + inner;
                    return Format(t.ReferencedType, target is BtfKind.Array or BtfKind.FunctionProto ? "(" + p + ")" : p, depth + 1);
                }

            case BtfKind.Array:
                return Format(t.ArrayInfo!.Value.ElementType, inner + "[" + t.ArrayInfo.Value.Length.ToString(CultureInfo.InvariantCulture) + "]", depth + 1);
            case BtfKind.FunctionProto:
                {
                    var ps = new List<string>();
                    foreach (BtfParameter p in t.Parameters)
                    {
                        ps.Add(p.TypeId == 0 && p.Name.Length == 0 ? "..." : Format(p.TypeId, p.Name, depth + 1));
                    }

                    return Format(t.ReferencedType, inner + "(" + (ps.Count == 0 ? "void" : string.Join(", ", ps)) + ")", depth + 1);
                }

            case BtfKind.Const or BtfKind.Volatile or BtfKind.Restrict:
                {
                    string q = t.Kind switch { BtfKind.Const => "const", BtfKind.Volatile => "volatile", _ => "restrict" };
                    if (Get(t.ReferencedType).Kind == BtfKind.Pointer)
                    {
                        // "char * const p": the qualifier binds to the pointer, so it goes inside the declarator.
                        return Format(t.ReferencedType, q + (inner.Length == 0 ? string.Empty : " " + inner), depth + 1);
                    }

                    return q + " " + Format(t.ReferencedType, inner, depth + 1);
                }

            case BtfKind.TypeTag:
                return Format(t.ReferencedType, inner, depth + 1);
            case BtfKind.Variable or BtfKind.Function:
                return Format(t.ReferencedType, inner.Length == 0 ? t.Name : inner, depth + 1);
            default:
                {
                    string b = t.Kind switch
                    {
                        BtfKind.Struct => "struct " + (t.Name.Length == 0 ? "{...}" : t.Name),
                        BtfKind.Union => "union " + (t.Name.Length == 0 ? "{...}" : t.Name),
                        BtfKind.Enum or BtfKind.Enum64 => "enum " + (t.Name.Length == 0 ? "{...}" : t.Name),
                        BtfKind.Forward => (t.KindFlag ? "union " : "struct ") + t.Name,
                        BtfKind.DataSection => "section " + t.Name,
                        BtfKind.DeclTag => "tag " + t.Name,
                        _ => t.Name,
                    };
                    return inner.Length == 0 ? b : b + " " + inner;
                }
        }
    }

    private BtfType Materialize(int id)
    {
        int r = _records[id - FirstId];
        uint nameOff = U32(_data, r);
        uint info = U32(_data, r + 4);
        uint sizeOrType = U32(_data, r + 8);
        var kind = (BtfKind)((info >> 24) & 0x1F);
        int vlen = (int)(info & 0xFFFF);
        bool kflag = (info >> 31) != 0;
        string name = nameOff == 0 ? string.Empty : StringAt(nameOff);
        int x = r + RecordHeader;
        string what = $"BTF type #{id}";
        switch (kind)
        {
            case BtfKind.Int:
                {
                    uint enc = U32(_data, x);
                    int bits = (int)(enc & 0xFF);
                    int offset = (int)((enc >> 16) & 0xFF);
                    if (bits == 0 || bits > 128 || offset + bits > sizeOrType * 8)
                    {
                        throw new VmStateFormatException(x, what, $"INT '{name}' of {sizeOrType} bytes has {bits} bits at bit offset {offset}");
                    }

                    return new BtfType(id, kind, name, kflag, vlen)
                    {
                        Size = sizeOrType,
                        IntEncoding = new BtfIntEncoding((enc & 0x0100_0000) != 0, (enc & 0x0200_0000) != 0, (enc & 0x0400_0000) != 0, offset, bits),
                    };
                }

            case BtfKind.Array:
                return new BtfType(id, kind, name, kflag, vlen)
                {
                    ArrayInfo = new BtfArrayInfo(Ref(U32(_data, x), x, what), Ref(U32(_data, x + 4), x + 4, what), U32(_data, x + 8)),
                };
            case BtfKind.Struct or BtfKind.Union:
                {
                    var members = new BtfMember[vlen];
                    for (int i = 0; i < vlen; i++)
                    {
                        int m = x + (12 * i);
                        uint off = U32(_data, m + 8);
                        uint bitOffset = kflag ? off & 0xFF_FFFF : off;
                        uint bitfield = kflag ? off >> 24 : 0;
                        if (bitOffset + bitfield > (ulong)sizeOrType * 8)
                        {
                            throw new VmStateFormatException(m, what, $"member {i} at bit {bitOffset} (+{bitfield}) lies outside the {sizeOrType}-byte {kind.ToString().ToLowerInvariant()} '{name}'");
                        }

                        uint memberName = U32(_data, m);
                        members[i] = new BtfMember(memberName == 0 ? string.Empty : StringAt(memberName), Ref(U32(_data, m + 4), m + 4, what), bitOffset, bitfield);
                    }

                    return new BtfType(id, kind, name, kflag, vlen) { Size = sizeOrType, Members = members };
                }

            case BtfKind.Enum or BtfKind.Enum64:
                {
                    var values = new BtfEnumValue[vlen];
                    int stride = kind == BtfKind.Enum ? 8 : 12;
                    for (int i = 0; i < vlen; i++)
                    {
                        int e = x + (stride * i);
                        long v = kind == BtfKind.Enum
                            ? kflag ? (long)BinaryPrimitives.ReadInt32LittleEndian(_data.AsSpan(e + 4)) : (long)U32(_data, e + 4)
                            : (long)(U32(_data, e + 4) | ((ulong)U32(_data, e + 8) << 32));
                        values[i] = new BtfEnumValue(StringAt(U32(_data, e)), v);
                    }

                    return new BtfType(id, kind, name, kflag, vlen) { Size = sizeOrType, EnumValues = values };
                }

            case BtfKind.FunctionProto:
                {
                    var ps = new BtfParameter[vlen];
                    for (int i = 0; i < vlen; i++)
                    {
                        int p = x + (8 * i);
                        uint pn = U32(_data, p);
                        ps[i] = new BtfParameter(pn == 0 ? string.Empty : StringAt(pn), Ref(U32(_data, p + 4), p + 4, what));
                    }

                    return new BtfType(id, kind, name, kflag, vlen) { ReferencedType = Ref(sizeOrType, r + 8, what), Parameters = ps };
                }

            case BtfKind.Variable:
                return new BtfType(id, kind, name, kflag, vlen) { ReferencedType = Ref(sizeOrType, r + 8, what), Linkage = U32(_data, x) };
            case BtfKind.DataSection:
                {
                    var vars = new BtfSectionVariable[vlen];
                    for (int i = 0; i < vlen; i++)
                    {
                        int v = x + (12 * i);
                        vars[i] = new BtfSectionVariable(Ref(U32(_data, v), v, what), U32(_data, v + 4), U32(_data, v + 8));
                    }

                    return new BtfType(id, kind, name, kflag, vlen) { Size = sizeOrType, Variables = vars };
                }

            case BtfKind.Float:
                return new BtfType(id, kind, name, kflag, vlen) { Size = sizeOrType };
            case BtfKind.DeclTag:
                return new BtfType(id, kind, name, kflag, vlen)
                {
                    ReferencedType = Ref(sizeOrType, r + 8, what),
                    ComponentIndex = BinaryPrimitives.ReadInt32LittleEndian(_data.AsSpan(x)),
                };
            case BtfKind.Function:
                return new BtfType(id, kind, name, kflag, vlen) { ReferencedType = Ref(sizeOrType, r + 8, what), Linkage = (uint)vlen };
            case BtfKind.Forward:
                return new BtfType(id, kind, name, kflag, vlen);
            default:
                // PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG.
                return new BtfType(id, kind, name, kflag, vlen) { ReferencedType = Ref(sizeOrType, r + 8, what) };
        }
    }

    private int Ref(uint id, int at, string what)
    {
        if (id >= (uint)NextId)
        {
            throw new VmStateFormatException(at, what, $"refers to type id {id}, but the last id is {NextId - 1}");
        }

        return (int)id;
    }
}
