using System.Buffers.Binary;
using VmState.Arch.Arm64;
using VmState.IO;
using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>
/// Builds <see cref="Arm64CpuState"/> from the decoded "cpu" sections of an AArch64 guest (vmsd "cpu" v22, QEMU 7.2
/// <c>target/arm/machine.c</c>) and the "cpu_common" sections, by field name: env.xregs[32] (xregs[31] is the SP in
/// use), env.pc, cpsr (PSTATE), env.elr_el[4], env.sp_el[4], env.banked_spsr[8], the cpreg list
/// (cpreg_vmstate_indexes/values: KVM-style system register ids and their values) and the "cpu/vfp" subsection
/// (env.vfp.zregs[N].d[2], fpscr).
/// </summary>
internal static class Arm64CpuSectionDecoder
{
    // QEMU 7.2 target/arm/vfp_helper.c: FPSR_MASK and FPCR_MASK split the saved FPSCR.
    private const uint FpsrMask = 0xF800_009F;
    private const uint FpcrMask = 0x07FF_9F00;

    /// <summary>True when the "cpu" sections are AArch64 ones (they have env.xregs).</summary>
    public static bool IsArm(IReadOnlyList<DeviceState> devices)
    {
        foreach (DeviceState d in devices)
        {
            if (d.IdStr == "cpu" && d.State is VmsdState s)
            {
                return s.Field("env.xregs") is not null;
            }
        }

        return false;
    }

    /// <summary>Decodes every "cpu" section, ordered by instance id (cpu_index).</summary>
    /// <exception cref="VmStateFormatException">A section lacks a field every AArch64 vCPU has, or has it in another shape.</exception>
    public static IReadOnlyList<Arm64CpuState> Decode(IReadOnlyList<DeviceState> devices)
    {
        var cpus = new List<Arm64CpuState>();
        foreach (DeviceState d in devices)
        {
            if (d.IdStr == "cpu" && d.State is not null)
            {
                cpus.Add(DecodeOne(d));
            }
        }

        foreach (DeviceState d in devices)
        {
            if (d.IdStr == "cpu_common" && d.State?.Field("halted") is DeviceField h)
            {
                foreach (Arm64CpuState c in cpus)
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

    /// <summary>Decodes one "cpu" section.</summary>
    public static Arm64CpuState DecodeOne(DeviceState d)
    {
        VmsdState s = d.State!;
        var cpu = new Arm64CpuState { Index = d.InstanceId };
        IReadOnlyList<DeviceField> x = Array(d, "env.xregs", 32);
        for (int i = 0; i < 31; i++)
        {
            cpu.X[i] = x[i].Integer;
        }

        cpu.Sp = x[31].Integer;
        cpu.Pc = Require(d, "env.pc").Integer;
        cpu.Pstate = Be32(Require(d, "cpsr"));
        CopyArray(d, "env.elr_el", cpu.ElrEl);
        CopyArray(d, "env.sp_el", cpu.SpEl);
        CopyArray(d, "env.banked_spsr", cpu.BankedSpsr);
        if (s.Field("cpreg_vmstate_indexes") is DeviceField ids && s.Field("cpreg_vmstate_values") is DeviceField values)
        {
            IReadOnlyList<DeviceField> idList = ids.Elements ?? [];
            IReadOnlyList<DeviceField> valueList = values.Elements ?? [];
            if (idList.Count != valueList.Count)
            {
                throw new VmStateFormatException(ids.Offset, $"cpu section (instance {d.InstanceId})", $"cpreg_vmstate_indexes has {idList.Count} entries but cpreg_vmstate_values {valueList.Count}");
            }

            // cpreg_vmstate_array_len says how many of the entries are used (QEMU 7.2 cpu_pre_save).
            int used = s.Field("cpreg_vmstate_array_len") is DeviceField len ? (int)Math.Clamp(len.SignedInteger, 0, idList.Count) : idList.Count;
            for (int i = 0; i < used; i++)
            {
                cpu.SetSystemRegister(idList[i].Integer, valueList[i].Integer);
            }
        }

        if (s.Subsection("cpu/vfp") is VmsdState vfp)
        {
            for (int i = 0; i < 32; i++)
            {
                if (vfp.Field($"env.vfp.zregs[{i}].d")?.Elements is { Count: 2 } q)
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(cpu.V.AsSpan(i * 16), q[0].Integer);
                    BinaryPrimitives.WriteUInt64LittleEndian(cpu.V.AsSpan((i * 16) + 8), q[1].Integer);
                }
            }

            uint fpscr = vfp.Field("fpscr") is DeviceField fpscrField ? Be32(fpscrField) : 0;
            cpu.Fpsr = fpscr & FpsrMask;
            cpu.Fpcr = fpscr & FpcrMask;
            cpu.HasFpSimd = true;
        }

        return cpu;
    }

    // "cpsr" and "fpscr" are VMStateInfos of their own (QEMU 7.2 target/arm/machine.c get_cpsr/put_cpsr,
    // get_fpscr/put_fpscr): 4 bytes written with qemu_put_be32, which the device decoder keeps as bytes.
    private static uint Be32(DeviceField f) => f.Kind switch
    {
        FieldKind.Integer => (uint)f.Integer,
        _ when f.Bytes is { Length: 4 } b => BinaryPrimitives.ReadUInt32BigEndian(b),
        _ => throw new VmStateFormatException(f.Offset, "cpu section", $"{f.Name} is not a 4-byte value"),
    };

    private static void CopyArray(DeviceState d, string name, ulong[] into)
    {
        IReadOnlyList<DeviceField> a = Array(d, name, into.Length);
        for (int i = 0; i < into.Length; i++)
        {
            into[i] = a[i].Integer;
        }
    }

    private static IReadOnlyList<DeviceField> Array(DeviceState d, string name, int length)
    {
        DeviceField f = Require(d, name);
        if (f.Elements is not { } e || e.Count != length)
        {
            throw new VmStateFormatException(f.Offset, $"cpu section (instance {d.InstanceId})", $"{name} is not an array of {length} registers");
        }

        return e;
    }

    private static DeviceField Require(DeviceState d, string name) =>
        d.State!.Field(name) ?? throw new VmStateFormatException(d.Offset, $"cpu section (instance {d.InstanceId})", $"the field {name} is missing");
}
