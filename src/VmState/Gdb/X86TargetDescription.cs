using System.Text;

namespace VmState.Gdb;

/// <summary>
/// The x86-64 register set the server offers: gdb's i386 core (general, segment and x87 registers) and SSE features,
/// plus FS/GS bases and the system registers (CR0, CR2, CR3, CR4, EFER, KERNEL_GS_BASE) in a feature of our own,
/// so <c>info registers cr3</c> works in gdb (GDB manual, "Target Description Format" and "i386 Features").
/// </summary>
public static class X86TargetDescription
{
    private const string Core = "org.gnu.gdb.i386.core";
    private const string Sse = "org.gnu.gdb.i386.sse";
    private const string Segments = "org.gnu.gdb.i386.segments";
    private const string System = "org.vmstate.x86.system";

    /// <summary>Registers in gdb's numbering (the order of the 'g' packet).</summary>
    public static readonly IReadOnlyList<GdbRegister> Registers = Build();

    /// <summary>The target.xml document.</summary>
    public static readonly string Xml = BuildXml();

    private static List<GdbRegister> Build()
    {
        var r = new List<GdbRegister>();
        foreach (string n in new[] { "rax", "rbx", "rcx", "rdx", "rsi", "rdi" })
        {
            r.Add(new(n, 64, "int64", Core));
        }

        r.Add(new("rbp", 64, "data_ptr", Core));
        r.Add(new("rsp", 64, "data_ptr", Core));
        for (int i = 8; i < 16; i++)
        {
            r.Add(new($"r{i}", 64, "int64", Core));
        }

        r.Add(new("rip", 64, "code_ptr", Core));
        r.Add(new("eflags", 32, "int32", Core));
        foreach (string n in new[] { "cs", "ss", "ds", "es", "fs", "gs" })
        {
            r.Add(new(n, 32, "int32", Core));
        }

        for (int i = 0; i < 8; i++)
        {
            r.Add(new($"st{i}", 80, "i387_ext", Core));
        }

        foreach (string n in new[] { "fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop" })
        {
            r.Add(new(n, 32, "int", Core));
        }

        for (int i = 0; i < 16; i++)
        {
            r.Add(new($"xmm{i}", 128, "vec128", Sse));
        }

        r.Add(new("mxcsr", 32, "int", Sse));
        r.Add(new("fs_base", 64, "int64", Segments));
        r.Add(new("gs_base", 64, "int64", Segments));
        foreach (string n in new[] { "k_gs_base", "cr0", "cr2", "cr3", "cr4", "efer" })
        {
            r.Add(new(n, 64, "int64", System));
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
                if (feature == Sse)
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
