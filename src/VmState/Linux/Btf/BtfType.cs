namespace VmState.Linux.Btf;

/// <summary>
/// One BTF type record (<c>struct btf_type</c> and its kind-specific trailer, Linux <c>include/uapi/linux/btf.h</c>).
/// Obtained from <see cref="BtfTypes"/>; fields that do not apply to the kind are 0, null or empty.
/// </summary>
public sealed class BtfType
{
    internal BtfType(int id, BtfKind kind, string name, bool kindFlag, int vlen)
    {
        Id = id;
        Kind = kind;
        Name = name;
        KindFlag = kindFlag;
        Vlen = vlen;
    }

    /// <summary>Type id (0 is void; ids at or above <see cref="BtfTypes.SyntheticIdBase"/> were made by <see cref="BtfTypes.PointerTo"/> or <see cref="BtfTypes.ArrayOf"/>).</summary>
    public int Id { get; }

    /// <summary>Kind.</summary>
    public BtfKind Kind { get; }

    /// <summary>Name; empty for anonymous types.</summary>
    public string Name { get; }

    /// <summary>kind_flag (bitfield member offsets for STRUCT/UNION, union for FWD, signed for ENUM/ENUM64, attribute for tags).</summary>
    public bool KindFlag { get; }

    /// <summary>vlen: members, enumerators, parameters or section entries (the linkage for FUNC).</summary>
    public int Vlen { get; }

    /// <summary>Size in bytes for INT, ENUM, ENUM64, STRUCT, UNION, DATASEC and FLOAT; 0 otherwise.</summary>
    public uint Size { get; internal init; }

    /// <summary>The referenced type for PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG, FUNC, FUNC_PROTO (return type), VAR and DECL_TAG; 0 otherwise.</summary>
    public int ReferencedType { get; internal init; }

    /// <summary>Encoding of an INT.</summary>
    public BtfIntEncoding? IntEncoding { get; internal init; }

    /// <summary>Element type and count of an ARRAY.</summary>
    public BtfArrayInfo? ArrayInfo { get; internal init; }

    /// <summary>Members of a STRUCT or UNION, in declaration order.</summary>
    public IReadOnlyList<BtfMember> Members { get; internal init; } = [];

    /// <summary>Enumerators of an ENUM or ENUM64.</summary>
    public IReadOnlyList<BtfEnumValue> EnumValues { get; internal init; } = [];

    /// <summary>Parameters of a FUNC_PROTO.</summary>
    public IReadOnlyList<BtfParameter> Parameters { get; internal init; } = [];

    /// <summary>Entries of a DATASEC.</summary>
    public IReadOnlyList<BtfSectionVariable> Variables { get; internal init; } = [];

    /// <summary>Linkage of a VAR (0 static, 1 global, 2 extern) or FUNC (its vlen).</summary>
    public uint Linkage { get; internal init; }

    /// <summary>component_idx of a DECL_TAG: −1 for the whole declaration, else the member or parameter index.</summary>
    public int ComponentIndex { get; internal init; }

    /// <summary>True for a STRUCT or UNION.</summary>
    public bool IsComposite => Kind is BtfKind.Struct or BtfKind.Union;

    /// <summary>True for an ENUM or ENUM64 whose values are signed: kind_flag (Linux 6.0+), read the way libbpf's <c>btf_dump</c> does.</summary>
    public bool IsSignedEnum => Kind is BtfKind.Enum or BtfKind.Enum64 && KindFlag;

    /// <inheritdoc />
    public override string ToString() => $"[{Id}] {Kind} '{Name}'";
}
