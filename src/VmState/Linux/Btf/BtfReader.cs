using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using VmState.IO;

namespace VmState.Linux.Btf;

/// <summary>
/// The bytes of one BTF blob (Linux <c>include/uapi/linux/btf.h</c>, <c>Documentation/bpf/btf.rst</c>): checks the
/// header and the bounds of the type and string sections, records in one pass where each type record starts, reads
/// strings, and turns a record into a <see cref="BtfType"/> on first use (cached). Every count and reference read
/// from the blob is checked; problems throw <see cref="VmStateFormatException"/> with the offset in the blob. For
/// split BTF (module BTF on top of vmlinux) ids and string offsets continue the base blob's. Lookups by name, sizes
/// and member paths are <see cref="BtfTypes"/>'s job.
/// </summary>
internal sealed class BtfReader
{
    private const ushort Magic = 0xEB9F;
    private const int RecordHeader = 12;

    /// <summary>Bits of btf_type.info that may be set: vlen 0–15, kind 24–28, kind_flag 31 (kernel/bpf/btf.c BTF_INFO_MASK).</summary>
    private const uint InfoMask = 0x9F00_FFFF;

    private readonly byte[] _data;
    private readonly int[] _records;
    private readonly int _stringStart;
    private readonly int _stringLength;
    private readonly BtfType?[] _cache;

    private BtfReader(byte[] data, BtfHeader header, BtfReader? baseReader, int[] records, int stringStart, int stringLength)
    {
        _data = data;
        Header = header;
        Base = baseReader;
        _records = records;
        _stringStart = stringStart;
        _stringLength = stringLength;
        FirstId = baseReader?.NextId ?? 1;
        StringBase = baseReader is null ? 0 : baseReader.StringBase + (uint)baseReader._stringLength;
        _cache = new BtfType?[records.Length];
    }

    /// <summary>The header.</summary>
    public BtfHeader Header { get; }

    /// <summary>The base blob of split BTF, or null.</summary>
    public BtfReader? Base { get; }

    /// <summary>Id of the first type in this blob (1, or the base's <see cref="NextId"/> for split BTF).</summary>
    public int FirstId { get; }

    /// <summary>One past the last type id of this blob.</summary>
    public int NextId => FirstId + _records.Length;

    /// <summary>Number of type records in this blob.</summary>
    public int Count => _records.Length;

    /// <summary>First string offset of this blob (0, or where the base's strings end for split BTF).</summary>
    public uint StringBase { get; }

    /// <summary>Size of the blob in bytes.</summary>
    public int Length => _data.Length;

    /// <summary>The blob as parsed.</summary>
    public ReadOnlyMemory<byte> Data => _data;

    /// <summary>Checks the header and section bounds and indexes the type records.</summary>
    /// <exception cref="VmStateFormatException">The header, a record or the string section is malformed.</exception>
    public static BtfReader Parse(byte[] data, BtfReader? baseReader, BtfLimits limits)
    {
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
        if (header.StringLength == 0 ? baseReader is null : data[(int)stringEnd - 1] != 0 || (baseReader is null && data[(int)stringStart] != 0))
        {
            throw new VmStateFormatException((long)stringStart, "BTF string section", "must start (base BTF) and end with a NUL byte");
        }

        int[] records = IndexRecords(data, (int)typeStart, (int)typeEnd, limits);
        return new BtfReader(data, header, baseReader, records, (int)stringStart, (int)header.StringLength);
    }

    /// <summary>The kind of the record at <paramref name="index"/> (0-based in this blob), read without materializing it.</summary>
    public BtfKind KindAt(int index) => (BtfKind)((Info(index) >> 24) & 0x1F);

    /// <summary>vlen of the record at <paramref name="index"/>.</summary>
    public int VlenAt(int index) => (int)(Info(index) & 0xFFFF);

    /// <summary>name_off of the record at <paramref name="index"/>.</summary>
    public uint NameOffsetAt(int index) => U32(_data, _records[index]);

    /// <summary>The type <paramref name="id"/> of this blob (<see cref="FirstId"/> ≤ id &lt; <see cref="NextId"/>), materialized once.</summary>
    /// <exception cref="VmStateFormatException">The record is malformed.</exception>
    public BtfType Get(int id) => _cache[id - FirstId] ??= Materialize(id);

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

    private uint Info(int index) => U32(_data, _records[index] + 4);

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
