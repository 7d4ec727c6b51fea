using System.Text;
using VmState.Arch.Arm64;

namespace VmState.Gdb;

/// <summary>
/// The AArch64 register set the server offers, in gdb's numbering (GDB manual, "AArch64 Features"): the
/// <c>org.gnu.gdb.aarch64.core</c> feature (x0–x30, sp, pc, cpsr as 0–33), <c>org.gnu.gdb.aarch64.fpu</c> (v0–v31,
/// fpsr, fpcr as 34–67) when the vCPUs carry their FP/SIMD state, then a feature of our own with the system registers
/// every vCPU carries (TTBR0_EL1, TTBR1_EL1, TCR_EL1, SCTLR_EL1, …, SP_EL0, SP_EL1, ELR_EL1, SPSR_EL1), so
/// <c>info registers TTBR1_EL1</c> works in gdb as <c>info registers cr3</c> does on x86.
/// </summary>
internal sealed class Arm64TargetDescription
{
    /// <summary>The core feature.</summary>
    public const string Core = "org.gnu.gdb.aarch64.core";

    /// <summary>The FP/SIMD feature.</summary>
    public const string Fpu = "org.gnu.gdb.aarch64.fpu";

    /// <summary>Our feature of system registers.</summary>
    public const string System = "org.vmstate.aarch64.sys";

    private Arm64TargetDescription(IReadOnlyList<GdbRegister> registers, IReadOnlyList<Arm64SystemRegister> systemRegisters)
    {
        Registers = registers;
        SystemRegisters = systemRegisters;
        Xml = BuildXml(registers);
    }

    /// <summary>Registers in gdb's numbering.</summary>
    public IReadOnlyList<GdbRegister> Registers { get; }

    /// <summary>The named system registers of the system feature, in its order (before the banked SP/ELR/SPSR).</summary>
    public IReadOnlyList<Arm64SystemRegister> SystemRegisters { get; }

    /// <summary>Whether v0–v31, fpsr and fpcr are offered.</summary>
    public bool HasFpu => Registers.Count > Arm64Architecture.GdbV0 && Registers[Arm64Architecture.GdbV0].Feature == Fpu;

    /// <summary>The target.xml document.</summary>
    public string Xml { get; }

    /// <summary>The banked registers that follow the named system registers.</summary>
    public static IReadOnlyList<string> Banked { get; } = ["SP_EL0", "SP_EL1", "ELR_EL1", "SPSR_EL1"];

    /// <summary>The description for <paramref name="cpus"/>: the FP/SIMD feature when all carry it, the system registers all carry.</summary>
    public static Arm64TargetDescription For(IReadOnlyList<Arm64CpuState> cpus)
    {
        var r = new List<GdbRegister>(68 + Arm64SystemRegisters.All.Count + Banked.Count);
        for (int i = 0; i <= 30; i++)
        {
            r.Add(new($"x{i}", 64, "int", Core));
        }

        r.Add(new("sp", 64, "data_ptr", Core));
        r.Add(new("pc", 64, "code_ptr", Core));
        r.Add(new("cpsr", 32, "int", Core));
        if (cpus.All(c => c.HasFpSimd))
        {
            for (int i = 0; i < 32; i++)
            {
                r.Add(new($"v{i}", 128, "aarch64v", Fpu));
            }

            r.Add(new("fpsr", 32, "int", Fpu));
            r.Add(new("fpcr", 32, "int", Fpu));
        }

        var sys = Arm64SystemRegisters.All.Where(s => cpus.All(c => c.SystemRegister(s) is not null)).ToList();
        foreach (Arm64SystemRegister s in sys)
        {
            r.Add(new(s.Name, 64, "uint64", System));
        }

        foreach (string b in Banked)
        {
            r.Add(new(b, 64, "uint64", System));
        }

        return new Arm64TargetDescription(r, sys);
    }

    private static string BuildXml(IReadOnlyList<GdbRegister> registers)
    {
        var sb = new StringBuilder();
        sb.Append("<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM \"gdb-target.dtd\"><target version=\"1.0\">");
        sb.Append("<architecture>aarch64</architecture>");
        string? feature = null;
        for (int i = 0; i < registers.Count; i++)
        {
            GdbRegister reg = registers[i];
            if (reg.Feature != feature)
            {
                if (feature is not null)
                {
                    sb.Append("</feature>");
                }

                feature = reg.Feature;
                sb.Append("<feature name=\"").Append(feature).Append("\">");
                if (feature == Fpu)
                {
                    // The vector views gdb's own aarch64-fpu.xml gives v0–v31: d (2 x 64), s (4 x 32), h (8 x 16), b (16 x 8), q (1 x 128).
                    sb.Append("<vector id=\"v2d\" type=\"ieee_double\" count=\"2\"/><vector id=\"v2u\" type=\"uint64\" count=\"2\"/><vector id=\"v2i\" type=\"int64\" count=\"2\"/>")
                      .Append("<vector id=\"v4f\" type=\"ieee_single\" count=\"4\"/><vector id=\"v4u\" type=\"uint32\" count=\"4\"/><vector id=\"v4i\" type=\"int32\" count=\"4\"/>")
                      .Append("<vector id=\"v8f\" type=\"ieee_half\" count=\"8\"/><vector id=\"v8u\" type=\"uint16\" count=\"8\"/><vector id=\"v8i\" type=\"int16\" count=\"8\"/>")
                      .Append("<vector id=\"v16u\" type=\"uint8\" count=\"16\"/><vector id=\"v16i\" type=\"int8\" count=\"16\"/>")
                      .Append("<vector id=\"v1u\" type=\"uint128\" count=\"1\"/><vector id=\"v1i\" type=\"int128\" count=\"1\"/>")
                      .Append("<union id=\"vnd\"><field name=\"f\" type=\"v2d\"/><field name=\"u\" type=\"v2u\"/><field name=\"s\" type=\"v2i\"/></union>")
                      .Append("<union id=\"vns\"><field name=\"f\" type=\"v4f\"/><field name=\"u\" type=\"v4u\"/><field name=\"s\" type=\"v4i\"/></union>")
                      .Append("<union id=\"vnh\"><field name=\"f\" type=\"v8f\"/><field name=\"u\" type=\"v8u\"/><field name=\"s\" type=\"v8i\"/></union>")
                      .Append("<union id=\"vnb\"><field name=\"u\" type=\"v16u\"/><field name=\"s\" type=\"v16i\"/></union>")
                      .Append("<union id=\"vnq\"><field name=\"u\" type=\"v1u\"/><field name=\"s\" type=\"v1i\"/></union>")
                      .Append("<union id=\"aarch64v\"><field name=\"d\" type=\"vnd\"/><field name=\"s\" type=\"vns\"/><field name=\"h\" type=\"vnh\"/>")
                      .Append("<field name=\"b\" type=\"vnb\"/><field name=\"q\" type=\"vnq\"/></union>");
                }
            }

            sb.Append("<reg name=\"").Append(reg.Name).Append("\" bitsize=\"").Append(reg.Bits)
              .Append("\" type=\"").Append(reg.Type).Append("\" regnum=\"").Append(i).Append("\"");
            if (reg.Feature == System)
            {
                sb.Append(" group=\"system\"");
            }

            sb.Append("/>");
        }

        sb.Append("</feature></target>");
        return sb.ToString();
    }
}
