using System.Text;
using VmState.Arch.X86;

namespace VmState.Gdb;

/// <summary>
/// The x86-64 register set the server offers: gdb's i386 core (general, segment and x87 registers) and SSE features,
/// plus FS/GS bases and the system registers (CR0, CR2, CR3, CR4, EFER, KERNEL_GS_BASE) in a feature of our own,
/// so <c>info registers cr3</c> works in gdb (GDB manual, "Target Description Format" and "i386 Features").
/// </summary>
internal static class X86TargetDescription
{
    /// <summary>Registers in gdb's numbering (the order of the 'g' packet), from <see cref="X86Registers.Gdb"/>.</summary>
    public static readonly IReadOnlyList<GdbRegister> Registers = Build();

    /// <summary>The target.xml document.</summary>
    public static readonly string Xml = BuildXml();

    private static List<GdbRegister> Build()
    {
        var r = new List<GdbRegister>();
        foreach (X86Register reg in X86Registers.Gdb)
        {
            X86GdbRegister g = reg.Gdb!;
            r.Add(new(g.Name, g.Bits, g.Type, g.Feature));
        }

        return r;
    }

    private static string BuildXml()
    {
        var sb = new StringBuilder();
        sb.Append("<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM \"gdb-target.dtd\"><target version=\"1.0\">");
        sb.Append("<architecture>i386:x86-64</architecture>");
        string? feature = null;
        for (int i = 0; i < Registers.Count; i++)
        {
            GdbRegister reg = Registers[i];
            if (reg.Feature != feature)
            {
                if (feature is not null)
                {
                    sb.Append("</feature>");
                }

                feature = reg.Feature;
                sb.Append("<feature name=\"").Append(feature).Append("\">");
                if (feature == X86Registers.GdbSse)
                {
                    sb.Append("<vector id=\"v4f\" type=\"ieee_single\" count=\"4\"/><vector id=\"v2d\" type=\"ieee_double\" count=\"2\"/>")
                      .Append("<vector id=\"v16i8\" type=\"int8\" count=\"16\"/><vector id=\"v8i16\" type=\"int16\" count=\"8\"/>")
                      .Append("<vector id=\"v4i32\" type=\"int32\" count=\"4\"/><vector id=\"v2i64\" type=\"int64\" count=\"2\"/>")
                      .Append("<union id=\"vec128\"><field name=\"v4_float\" type=\"v4f\"/><field name=\"v2_double\" type=\"v2d\"/>")
                      .Append("<field name=\"v16_int8\" type=\"v16i8\"/><field name=\"v8_int16\" type=\"v8i16\"/>")
                      .Append("<field name=\"v4_int32\" type=\"v4i32\"/><field name=\"v2_int64\" type=\"v2i64\"/>")
                      .Append("<field name=\"uint128\" type=\"uint128\"/></union>");
                }
            }

            sb.Append("<reg name=\"").Append(reg.Name).Append("\" bitsize=\"").Append(reg.Bits)
              .Append("\" type=\"").Append(reg.Type).Append("\" regnum=\"").Append(i).Append("\"/>");
        }

        sb.Append("</feature></target>");
        return sb.ToString();
    }
}
