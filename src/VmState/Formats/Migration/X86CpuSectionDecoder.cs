using System.Buffers.Binary;
using VmState.Arch.X86;
using VmState.IO;
using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>
/// Builds <see cref="X86CpuState"/> from the decoded "cpu" (vmsd "cpu" v12, QEMU 7.2 <c>target/i386/machine.c</c>)
/// and "cpu_common" sections, by field name, so new subsections in later QEMU versions do not matter.
/// </summary>
internal static class X86CpuSectionDecoder
{
    /// <summary>Decodes every "cpu" section, ordered by instance id (cpu_index).</summary>
    public static IReadOnlyList<X86CpuState> Decode(IReadOnlyList<DeviceState> devices)
    {
        var cpus = new List<X86CpuState>();
        foreach (DeviceState d in devices)
        {
            if (d.IdStr != "cpu" || d.State is null)
            {
                continue;
            }

            cpus.Add(DecodeOne(d));
        }

        foreach (DeviceState d in devices)
        {
            if (d.IdStr == "cpu_common" && d.State?.Field("halted") is DeviceField h)
            {
                foreach (X86CpuState c in cpus)
                {
                    if (c.Index == d.InstanceId)
                    {
                        c.Halted = h.Integer != 0;
                    }
                }
            }
        }

        cpus.Sort((a, b) => a.Index.CompareTo(b.Index));
        return cpus;
    }

    private static X86CpuState DecodeOne(DeviceState d)
    {
        VmsdState s = d.State!;
        var cpu = new X86CpuState { Index = d.InstanceId };
        DeviceField regs = Require(d, "env.regs");
        if (regs.Elements is not { Count: 16 })
        {
            throw new VmStateFormatException(regs.Offset, $"cpu section (instance {d.InstanceId})", "env.regs is not an array of 16 registers");
        }

        DeviceField segs = Require(d, "env.segs");
        if (segs.Elements is not { Count: 6 })
        {
            throw new VmStateFormatException(segs.Offset, $"cpu section (instance {d.InstanceId})", "env.segs is not an array of 6 segments");
        }

        // Whole segments first (limit and flags are not registers of the table); the table then sets the same
        // selectors and bases again, from the same fields.
        for (int i = 0; i < 6; i++)
        {
            cpu.Segments[i] = Segment(segs.Elements[i]);
        }

        cpu.Ldt = Segment(Require(d, "env.ldt"));
        cpu.Tr = Segment(Require(d, "env.tr"));
        cpu.Gdt = Segment(Require(d, "env.gdt"));
        cpu.Idt = Segment(Require(d, "env.idt"));
        foreach (X86Register r in X86Registers.All)
        {
            if (r.StateField is not X86StateField where)
            {
                continue;
            }

            if (FindField(s, where) is DeviceField f)
            {
                r.Set(cpu, f.Integer);
            }
            else if (where.Required)
            {
                Require(d, where.Name);
            }
        }

        if (s.Field("env.xmm_regs[0]")?.Elements is { Count: 16 } xmm)
        {
            for (int i = 0; i < 16; i++)
            {
                if (xmm[i].Struct is { Fields.Count: 2 } x)
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(cpu.Xmm.AsSpan(i * 16), x.Fields[0].Integer);
                    BinaryPrimitives.WriteUInt64LittleEndian(cpu.Xmm.AsSpan((i * 16) + 8), x.Fields[1].Integer);
                }
            }
        }

        return cpu;
    }

    /// <summary>
    /// The field of a "cpu" section that holds <paramref name="where"/>, or null when the section has none (an array of
    /// another length than QEMU declares counts as none).
    /// </summary>
    public static DeviceField? FindField(VmsdState section, X86StateField where)
    {
        ArgumentNullException.ThrowIfNull(section);
        ArgumentNullException.ThrowIfNull(where);
        DeviceField? f = section.Field(where.Name);
        if (f is null || where.Index < 0)
        {
            return f;
        }

        if (f.Elements is not { } elements || elements.Count != where.Length)
        {
            return null;
        }

        DeviceField e = elements[where.Index];
        return where.Member is null ? e : e.Struct?.Field(where.Member);
    }

    private static DeviceField Require(DeviceState d, string name) =>
        d.State!.Field(name) ?? throw new VmStateFormatException(d.Offset, $"cpu section (instance {d.InstanceId})", $"the field {name} is missing");

    private static X86Segment Segment(DeviceField f)
    {
        VmsdState? st = f.Struct;
        if (st is null)
        {
            throw new VmStateFormatException(f.Offset, "cpu segment", $"{f.Name} is not a segment structure");
        }

        return new X86Segment(
            (uint)(st.Field("selector")?.Integer ?? 0),
            st.Field("base")?.Integer ?? 0,
            (uint)(st.Field("limit")?.Integer ?? 0),
            (uint)(st.Field("flags")?.Integer ?? 0));
    }
}
