using System.Globalization;
using VmState.IO;

namespace VmState.Linux.Btf;

/// <summary>
/// Spells BTF types the way C declares them (what <c>vmstate types</c>, <see cref="TypeLayoutWriter"/> and error
/// messages print): the declarator is built inside out, so pointers to arrays and functions get their parentheses
/// (<c>char (*p)[4]</c>, <c>void (*fn)(int)</c>) and a qualifier of a pointer binds after the star
/// (<c>char *const p</c>). Reached through <see cref="BtfTypes.TypeName"/> and <see cref="BtfTypes.Declaration"/>.
/// </summary>
internal static class BtfCSpelling
{
    /// <summary>A C declaration of <paramref name="name"/> (empty for an abstract declarator) with type <paramref name="id"/>.</summary>
    /// <exception cref="VmStateFormatException">A reference chain is longer than the limit (a loop).</exception>
    public static string Declaration(BtfTypes types, int id, string name) => Format(types, id, name, 0);

    private static string Format(BtfTypes types, int id, string inner, int depth)
    {
        if (depth > types.Limits.MaxChainDepth)
        {
            throw types.ChainTooLong(id);
        }

        BtfType t = types.Get(id);
        switch (t.Kind)
        {
            case BtfKind.Pointer:
                {
                    BtfKind target = types.Get(t.ReferencedType).Kind;
                    string p = "*" + inner;
                    return Format(types, t.ReferencedType, target is BtfKind.Array or BtfKind.FunctionProto ? "(" + p + ")" : p, depth + 1);
                }

            case BtfKind.Array:
                return Format(types, t.ArrayInfo!.Value.ElementType, inner + "[" + t.ArrayInfo.Value.Length.ToString(CultureInfo.InvariantCulture) + "]", depth + 1);
            case BtfKind.FunctionProto:
                {
                    var ps = new List<string>();
                    foreach (BtfParameter p in t.Parameters)
                    {
                        ps.Add(p.TypeId == 0 && p.Name.Length == 0 ? "..." : Format(types, p.TypeId, p.Name, depth + 1));
                    }

                    return Format(types, t.ReferencedType, inner + "(" + (ps.Count == 0 ? "void" : string.Join(", ", ps)) + ")", depth + 1);
                }

            case BtfKind.Const or BtfKind.Volatile or BtfKind.Restrict:
                {
                    string q = t.Kind switch { BtfKind.Const => "const", BtfKind.Volatile => "volatile", _ => "restrict" };
                    if (types.Get(t.ReferencedType).Kind == BtfKind.Pointer)
                    {
                        // "char * const p": the qualifier binds to the pointer, so it goes inside the declarator.
                        return Format(types, t.ReferencedType, q + (inner.Length == 0 ? string.Empty : " " + inner), depth + 1);
                    }

                    return q + " " + Format(types, t.ReferencedType, inner, depth + 1);
                }

            case BtfKind.TypeTag:
                return Format(types, t.ReferencedType, inner, depth + 1);
            case BtfKind.Variable or BtfKind.Function:
                return Format(types, t.ReferencedType, inner.Length == 0 ? t.Name : inner, depth + 1);
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
}
