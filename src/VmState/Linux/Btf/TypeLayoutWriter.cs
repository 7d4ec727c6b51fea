using System.Globalization;
using System.Text;

namespace VmState.Linux.Btf;

/// <summary>
/// Prints a type's layout the way pahole does (<c>pahole/dwarves</c> output): one C declaration per member with its
/// byte offset and size in a trailing comment, bitfields as <c>offset:bit</c>, anonymous structs and unions expanded
/// in place with offsets relative to the outer type, holes and trailing padding called out, and a size summary.
/// </summary>
public static class TypeLayoutWriter
{
    private const int CommentColumn = 56;
    private const int CacheLine = 64;

    /// <summary>The layout of type <paramref name="typeId"/> (struct, union, enum, typedef — followed to what it names — or any other type as one line).</summary>
    public static string Format(BtfTypes types, int typeId)
    {
        ArgumentNullException.ThrowIfNull(types);
        var sb = new StringBuilder();
        BtfType t = types.Get(typeId);
        if (t.Kind == BtfKind.Typedef)
        {
            sb.Append("typedef ").Append(types.Declaration(t.ReferencedType, t.Name)).Append(";\n");
            BtfType target = types.Resolve(typeId);
            if (target.IsComposite || target.Kind is BtfKind.Enum or BtfKind.Enum64)
            {
                sb.Append('\n');
                t = target;
            }
            else
            {
                return sb.ToString();
            }
        }

        switch (t.Kind)
        {
            case BtfKind.Struct or BtfKind.Union:
                {
                    sb.Append(t.Kind == BtfKind.Struct ? "struct " : "union ").Append(t.Name.Length == 0 ? "{...}" : t.Name).Append(" {\n");
                    Members(types, t, 0, 1, sb);
                    sb.Append('\n');
                    int cachelines = (int)((t.Size + CacheLine - 1) / CacheLine);
                    Line(sb, 1, $"/* size: {t.Size}, cachelines: {cachelines}, members: {t.Members.Count} */");
                    if (t.Size % CacheLine != 0)
                    {
                        Line(sb, 1, $"/* last cacheline: {t.Size % CacheLine} bytes */");
                    }

                    sb.Append("};\n");
                    break;
                }

            case BtfKind.Enum or BtfKind.Enum64:
                {
                    sb.Append("enum ").Append(t.Name.Length == 0 ? "{...}" : t.Name).Append(" {\n");
                    foreach (BtfEnumValue v in t.EnumValues)
                    {
                        string value = t.IsSignedEnum || v.Value >= 0 ? v.Value.ToString(CultureInfo.InvariantCulture) : ((ulong)v.Value).ToString(CultureInfo.InvariantCulture);
                        Line(sb, 1, $"{v.Name} = {value},");
                    }

                    sb.Append("};\n");
                    Line(sb, 0, $"/* size: {t.Size} */");
                    break;
                }

            case BtfKind.Function or BtfKind.FunctionProto or BtfKind.Forward or BtfKind.Void:
                sb.Append(types.TypeName(t.Id)).Append(";\n");
                break;
            default:
                sb.Append(types.TypeName(t.Id)).Append(";\n");
                Line(sb, 0, $"/* size: {SizeOrZero(types, t.Id)} */");
                break;
        }

        return sb.ToString();
    }

    private static void Members(BtfTypes types, BtfType container, ulong baseBits, int depth, StringBuilder sb)
    {
        ulong endBits = baseBits;
        bool isStruct = container.Kind == BtfKind.Struct;
        foreach (BtfMember m in container.Members)
        {
            ulong start = baseBits + m.BitOffset;
            if (isStruct && start > endBits)
            {
                Hole(sb, depth, endBits, start);
            }

            BtfType resolved = types.Resolve(m.TypeId);
            ulong size = SizeOrZero(types, m.TypeId);
            if (m.IsAnonymous && resolved.IsComposite)
            {
                Line(sb, depth, resolved.Kind == BtfKind.Struct ? "struct {" : "union {");
                Members(types, resolved, start, depth + 1, sb);
                Commented(sb, depth, "};", $"/* {start / 8,5} {size,5} */");
            }
            else if (m.IsBitfield)
            {
                Commented(sb, depth, $"{types.Declaration(m.TypeId, m.Name)}:{m.BitfieldSize};", $"/* {start / 8,5}:{start % 8,2} {size,4} */");
            }
            else
            {
                Commented(sb, depth, types.Declaration(m.TypeId, m.Name) + ";", $"/* {start / 8,5} {size,5} */");
            }

            ulong end = m.IsBitfield ? start + m.BitfieldSize : start + (size * 8);
            if (!isStruct || end > endBits)
            {
                endBits = Math.Max(endBits, end);
            }
        }

        ulong total = baseBits + ((ulong)container.Size * 8);
        if (isStruct && total > endBits)
        {
            ulong pad = total - endBits;
            Line(sb, depth, pad % 8 == 0 ? $"/* padding: {pad / 8} */" : $"/* bit padding: {pad} bits */");
        }
    }

    /// <summary>A gap: the bits up to the next byte boundary, then whole bytes.</summary>
    private static void Hole(StringBuilder sb, int depth, ulong from, ulong to)
    {
        ulong bits = Math.Min(to, (from + 7) & ~7UL) - from;
        if (bits > 0)
        {
            Line(sb, depth, $"/* XXX {bits} bit{(bits == 1 ? string.Empty : "s")} hole */");
        }

        ulong bytes = (to - from - bits) / 8;
        if (bytes > 0)
        {
            Line(sb, depth, $"/* XXX {bytes} byte{(bytes == 1 ? string.Empty : "s")} hole */");
        }
    }

    private static ulong SizeOrZero(BtfTypes types, int id)
    {
        try
        {
            return types.SizeOf(id);
        }
        catch (ArgumentException)
        {
            // Flexible and incomplete members (e.g. a trailing array of a forward-declared type) have no size.
            return 0;
        }
    }

    private static void Line(StringBuilder sb, int depth, string text) => sb.Append(' ', 4 * depth).Append(text).Append('\n');

    private static void Commented(StringBuilder sb, int depth, string text, string comment)
    {
        int at = sb.Length;
        sb.Append(' ', 4 * depth).Append(text);
        int width = sb.Length - at;
        sb.Append(' ', Math.Max(1, CommentColumn - width)).Append(comment).Append('\n');
    }
}
