using System.Runtime.CompilerServices;

namespace VmState.Linux.Btf;

/// <summary>
/// The names of one BTF blob's types, by kind: built in one pass over the raw records (no record is materialized);
/// functions and enumerators, which few lookups need, are indexed on first use. Covers only its own blob; the base
/// of split BTF has its own.
/// </summary>
internal sealed class BtfNameIndex
{
    private readonly BtfReader _reader;
    private readonly Dictionary<string, int>?[] _byKind = new Dictionary<string, int>?[20];
    private Dictionary<string, int>? _functions;
    private Dictionary<string, (int TypeId, long Value)>? _enumerators;

    public BtfNameIndex(BtfReader reader)
    {
        _reader = reader;
        foreach (BtfKind k in new[] { BtfKind.Int, BtfKind.Struct, BtfKind.Union, BtfKind.Enum, BtfKind.Typedef, BtfKind.Variable, BtfKind.DataSection, BtfKind.Float, BtfKind.Enum64 })
        {
            _byKind[(int)k] = new Dictionary<string, int>(StringComparer.Ordinal);
        }

        Build();
    }

    /// <summary>The id of the type of <paramref name="kind"/> named <paramref name="name"/> in this blob, or 0 (ENUM also finds ENUM64).</summary>
    public int Find(string name, BtfKind kind)
    {
        int id = 0;
        if (kind == BtfKind.Function)
        {
            id = Functions().GetValueOrDefault(name);
        }
        else if ((int)kind < _byKind.Length && _byKind[(int)kind] is Dictionary<string, int> d)
        {
            id = d.GetValueOrDefault(name);
        }

        if (id == 0 && kind == BtfKind.Enum)
        {
            id = _byKind[(int)BtfKind.Enum64]!.GetValueOrDefault(name);
        }

        return id;
    }

    /// <summary>The enumerator named <paramref name="name"/> of any ENUM/ENUM64 of this blob (the first one wins).</summary>
    public bool TryGetEnumerator(string name, out long value)
    {
        if (Enumerators().TryGetValue(name, out (int TypeId, long Value) e))
        {
            value = e.Value;
            return true;
        }

        value = 0;
        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Build()
    {
        for (int i = 0; i < _reader.Count; i++)
        {
            uint nameOff = _reader.NameOffsetAt(i);
            int kind = (int)_reader.KindAt(i);
            if (nameOff == 0 || _byKind[kind] is not Dictionary<string, int> d)
            {
                continue;
            }

            string name = _reader.StringAt(nameOff);
            int id = _reader.FirstId + i;
            if (!d.TryGetValue(name, out int existing))
            {
                d[name] = id;
            }
            else if (kind is 4 or 5 && _reader.VlenAt(existing - _reader.FirstId) == 0 && _reader.VlenAt(i) != 0)
            {
                // Prefer a definition with members over an empty one of the same name.
                d[name] = id;
            }
        }
    }

    private Dictionary<string, int> Functions()
    {
        if (Volatile.Read(ref _functions) is Dictionary<string, int> known)
        {
            return known;
        }

        var d = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < _reader.Count; i++)
        {
            if (_reader.KindAt(i) == BtfKind.Function && _reader.NameOffsetAt(i) != 0)
            {
                d.TryAdd(_reader.StringAt(_reader.NameOffsetAt(i)), _reader.FirstId + i);
            }
        }

        Volatile.Write(ref _functions, d);
        return d;
    }

    private Dictionary<string, (int TypeId, long Value)> Enumerators()
    {
        if (Volatile.Read(ref _enumerators) is Dictionary<string, (int, long)> known)
        {
            return known;
        }

        var d = new Dictionary<string, (int, long)>(StringComparer.Ordinal);
        for (int i = 0; i < _reader.Count; i++)
        {
            if (_reader.KindAt(i) is BtfKind.Enum or BtfKind.Enum64)
            {
                foreach (BtfEnumValue v in _reader.Get(_reader.FirstId + i).EnumValues)
                {
                    d.TryAdd(v.Name, (_reader.FirstId + i, v.Value));
                }
            }
        }

        Volatile.Write(ref _enumerators, d);
        return d;
    }
}
