using System.Buffers.Binary;
using System.Text;

namespace VmState.Tests.Linux;

/// <summary>
/// Writes BTF blobs in code, record by record as <c>include/uapi/linux/btf.h</c> lays them out, independently of the
/// reader. Ids are handed out in order (<see cref="NextId"/> gives the id the next record will get, for forward references).
/// </summary>
public sealed class BtfWriter
{
    private readonly List<byte> _types = [];
    private readonly List<byte> _strings = [0];
    private readonly Dictionary<string, uint> _offsets = new(StringComparer.Ordinal) { [string.Empty] = 0 };
    private readonly uint _stringBase;

    /// <summary>A base blob (ids from 1) or, with <paramref name="firstId"/> and <paramref name="stringBase"/>, split BTF on top of one.</summary>
    public BtfWriter(int firstId = 1, uint stringBase = 0)
    {
        NextId = firstId;
        _stringBase = stringBase;
        if (stringBase != 0)
        {
            // Split BTF's string section does not start with its own empty string.
            _strings.Clear();
            _offsets.Clear();
            _offsets[string.Empty] = 0;
        }
    }

    public int NextId { get; private set; }

    public uint Str(string s)
    {
        if (!_offsets.TryGetValue(s, out uint off))
        {
            off = _stringBase + (uint)_strings.Count;
            _strings.AddRange(Encoding.UTF8.GetBytes(s));
            _strings.Add(0);
            _offsets[s] = off;
        }

        return off;
    }

    public int Raw(uint nameOff, uint info, uint sizeOrType, params uint[] extra)
    {
        U32(nameOff);
        U32(info);
        U32(sizeOrType);
        foreach (uint x in extra)
        {
            U32(x);
        }

        return NextId++;
    }

    private static uint Info(int kind, int vlen, bool kflag = false) => ((uint)kind << 24) | (uint)vlen | (kflag ? 0x8000_0000u : 0);

    public int Int(string name, uint size, bool signed = false, bool isChar = false, bool isBool = false, int bits = 0) =>
        Raw(Str(name), Info(1, 0), size, ((signed ? 1u : 0) | (isChar ? 2u : 0) | (isBool ? 4u : 0)) << 24 | (bits == 0 ? size * 8 : (uint)bits));

    public int Ptr(int target) => Raw(0, Info(2, 0), (uint)target);

    public int Array(int element, int index, uint count) => Raw(0, Info(3, 0), 0, (uint)element, (uint)index, count);

    public int Struct(string name, uint size, params (string Name, int Type, uint BitOffset, uint BitfieldSize)[] members) => Composite(4, name, size, members);

    public int Union(string name, uint size, params (string Name, int Type, uint BitOffset, uint BitfieldSize)[] members) => Composite(5, name, size, members);

    private int Composite(int kind, string name, uint size, (string Name, int Type, uint BitOffset, uint BitfieldSize)[] members)
    {
        bool kflag = members.Any(m => m.BitfieldSize != 0);
        var extra = new List<uint>();
        foreach ((string n, int t, uint bit, uint bf) in members)
        {
            extra.Add(Str(n));
            extra.Add((uint)t);
            extra.Add(kflag ? (bf << 24) | bit : bit);
        }

        return Raw(name.Length == 0 ? 0 : Str(name), Info(kind, members.Length, kflag), size, [.. extra]);
    }

    public int Enum(string name, uint size, bool signed, params (string Name, long Value)[] values) =>
        Raw(name.Length == 0 ? 0 : Str(name), Info(6, values.Length, signed), size, [.. values.SelectMany(v => new[] { Str(v.Name), (uint)v.Value })]);

    public int Enum64(string name, bool signed, params (string Name, long Value)[] values) =>
        Raw(Str(name), Info(19, values.Length, signed), 8, [.. values.SelectMany(v => new[] { Str(v.Name), (uint)v.Value, (uint)((ulong)v.Value >> 32) })]);

    public int Fwd(string name, bool union) => Raw(Str(name), Info(7, 0, union), 0);

    public int Typedef(string name, int target) => Raw(Str(name), Info(8, 0), (uint)target);

    public int Volatile(int target) => Raw(0, Info(9, 0), (uint)target);

    public int Const(int target) => Raw(0, Info(10, 0), (uint)target);

    public int Restrict(int target) => Raw(0, Info(11, 0), (uint)target);

    public int Func(string name, int proto, int linkage = 1) => Raw(Str(name), Info(12, linkage), (uint)proto);

    public int FuncProto(int returns, params (string Name, int Type)[] parameters) =>
        Raw(0, Info(13, parameters.Length), (uint)returns, [.. parameters.SelectMany(p => new[] { Str(p.Name), (uint)p.Type })]);

    public int Var(string name, int type, uint linkage = 1) => Raw(Str(name), Info(14, 0), (uint)type, linkage);

    public int DataSec(string name, uint size, params (int Var, uint Offset, uint Size)[] vars) =>
        Raw(Str(name), Info(15, vars.Length), size, [.. vars.SelectMany(v => new[] { (uint)v.Var, v.Offset, v.Size })]);

    public int Float(string name, uint size) => Raw(Str(name), Info(16, 0), size);

    public int DeclTag(string name, int target, int component) => Raw(Str(name), Info(17, 0), (uint)target, (uint)component);

    public int TypeTag(string name, int target) => Raw(Str(name), Info(18, 0), (uint)target);

    /// <summary>Header (24 bytes, magic 0xEB9F, version 1), then the type section, then the string section.</summary>
    public byte[] Build()
    {
        byte[] blob = new byte[24 + _types.Count + _strings.Count];
        BinaryPrimitives.WriteUInt16LittleEndian(blob, 0xEB9F);
        blob[2] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(4), 24);
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(8), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(12), (uint)_types.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(16), (uint)_types.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(20), (uint)_strings.Count);
        _types.CopyTo(blob, 24);
        _strings.CopyTo(blob, 24 + _types.Count);
        return blob;
    }

    /// <summary>Bytes of the string section so far (a split blob's strings start after them).</summary>
    public uint StringLength => (uint)_strings.Count;

    private void U32(uint v)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, v);
        _types.AddRange(b.ToArray());
    }
}
