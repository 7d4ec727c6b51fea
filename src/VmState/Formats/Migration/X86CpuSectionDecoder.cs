using System.Buffers.Binary;
using VmState.Arch.X86;
using VmState.IO;
using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>
/// Builds <see cref="X86CpuState"/> from the decoded "cpu" (vmsd "cpu" v12, QEMU 7.2 <c>target/i386/machine.c</c>)
/// and "cpu_common" sections, by field name, so new subsections in later QEMU versions do not matter.
/// </summary>
public static class X86CpuSectionDecoder
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

        for (int i = 0; i < 16; i++)
        {
            cpu.Regs[i] = regs.Elements[i].Integer;
        }

        cpu.Rip = Require(d, "env.eip").Integer;
        cpu.Rflags = Require(d, "env.eflags").Integer;
        cpu.HFlags = (uint)(s.Field("env.hflags")?.Integer ?? 0);
        DeviceField segs = Require(d, "env.segs");
        if (segs.Elements is not { Count: 6 })
        {
            throw new VmStateFormatException(segs.Offset, $"cpu section (instance {d.InstanceId})", "env.segs is not an array of 6 segments");
        }

        for (int i = 0; i < 6; i++)
        {
            cpu.Segments[i] = Segment(segs.Elements[i]);
        }

        cpu.Ldt = Segment(Require(d, "env.ldt"));
        cpu.Tr = Segment(Require(d, "env.tr"));
        cpu.Gdt = Segment(Require(d, "env.gdt"));
        cpu.Idt = Segment(Require(d, "env.idt"));
        cpu.Cr0 = Require(d, "env.cr[0]").Integer;
        cpu.Cr2 = s.Field("env.cr[2]")?.Integer ?? 0;
        cpu.Cr3 = Require(d, "env.cr[3]").Integer;
        cpu.Cr4 = Require(d, "env.cr[4]").Integer;
        if (s.Field("env.dr")?.Elements is { Count: 8 } dr)
        {
            for (int i = 0; i < 8; i++)
            {
                cpu.Dr[i] = dr[i].Integer;
            }
        }

        cpu.Efer = s.Field("env.efer")?.Integer ?? 0;
        cpu.Star = s.Field("env.star")?.Integer ?? 0;
        cpu.Lstar = s.Field("env.lstar")?.Integer ?? 0;
        cpu.Cstar = s.Field("env.cstar")?.Integer ?? 0;
        cpu.Fmask = s.Field("env.fmask")?.Integer ?? 0;
        cpu.KernelGsBase = s.Field("env.kernelgsbase")?.Integer ?? 0;
        cpu.SysenterCs = s.Field("env.sysenter_cs")?.Integer ?? 0;
        cpu.SysenterEsp = s.Field("env.sysenter_esp")?.Integer ?? 0;
        cpu.SysenterEip = s.Field("env.sysenter_eip")?.Integer ?? 0;
        cpu.Xcr0 = s.Field("env.xcr0")?.Integer ?? 0;
        cpu.Mxcsr = (uint)(s.Field("env.mxcsr")?.Integer ?? 0);
        cpu.Fcw = (ushort)(s.Field("env.fpuc")?.Integer ?? 0);
        cpu.Fsw = (ushort)(s.Field("env.fpus_vmstate")?.Integer ?? 0);
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
