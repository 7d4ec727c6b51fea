using System.Buffers.Binary;
using System.Globalization;
using VmState.Arch.Arm64;
using VmState.Machine;

namespace VmState.Editing;

/// <summary>
/// Where an AArch64 vCPU's registers live in its "cpu" section (QEMU 7.2 <c>target/arm/machine.c</c>
/// vmstate_arm_cpu): x0–x30 in env.xregs[0..30], the SP in use in env.xregs[31], env.pc, PSTATE in "cpsr" (a
/// big-endian 4-byte VMStateInfo, get_cpsr/put_cpsr), the banked env.sp_el[0..3], env.elr_el[1..3] and
/// env.banked_spsr[1] (SPSR_EL1), and the system registers in cpreg_vmstate_values at the index of their KVM-style
/// id in cpreg_vmstate_indexes (written back into the CPU by QEMU's cpu_post_load, write_list_to_cpustate).
/// </summary>
internal static class Arm64RegisterFields
{
    /// <summary>The register names <see cref="Set"/> takes besides the system registers.</summary>
    public const string Known = "x0-x30 (lr, fp), sp, pc, pstate (cpsr), sp_el0-sp_el3, elr_el1-elr_el3, spsr_el1, and the system registers of the cpreg list by name (TTBR0_EL1, TPIDR_EL1, ...)";

    /// <summary>Sets <paramref name="register"/> of the vCPU whose section is <paramref name="section"/>; returns its canonical name.</summary>
    /// <exception cref="InvalidEditException">An unknown register, or a field the section lacks.</exception>
    public static string Set(MigrationStreamEditor stream, DeviceState section, Arm64CpuState cpu, string register, ulong value)
    {
        VmsdState s = section.State!;
        string n = register.ToLowerInvariant();
        n = n switch { "lr" => "x30", "fp" => "x29", "cpsr" => "pstate", _ => n };
        if (n.Length is 2 or 3 && n[0] == 'x' && int.TryParse(n.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out int xi) && xi <= 30)
        {
            stream.SetField(Element(s, "env.xregs", xi, register), value);
            return n;
        }

        switch (n)
        {
            case "sp":
                // xregs[31] is the stack pointer in use (QEMU keeps the banked copy of the current EL stale until
                // the next exception level change, aarch64_save_sp).
                stream.SetField(Element(s, "env.xregs", 31, register), value);
                return n;
            case "pc":
                stream.SetField(Field(s, "env.pc", register), value);
                return n;
            case "pstate":
                SetPstate(stream, Field(s, "cpsr", register), value, register);
                return n;
            case "spsr_el1":
                stream.SetField(Element(s, "env.banked_spsr", 1, register), value);
                return n;
        }

        if (n.Length == 6 && n.StartsWith("sp_el", StringComparison.Ordinal) && n[5] is >= '0' and <= '3')
        {
            stream.SetField(Element(s, "env.sp_el", n[5] - '0', register), value);
            return n;
        }

        if (n.Length == 7 && n.StartsWith("elr_el", StringComparison.Ordinal) && n[6] is >= '1' and <= '3')
        {
            stream.SetField(Element(s, "env.elr_el", n[6] - '0', register), value);
            return n;
        }

        foreach (ulong id in cpu.SystemRegisterIds)
        {
            string name = Arm64SystemRegisters.NameOf(id);
            if (string.Equals(name, register, StringComparison.OrdinalIgnoreCase))
            {
                stream.SetField(SystemRegisterValue(s, id, name), value);
                return name;
            }
        }

        throw new InvalidEditException(register, $"unknown AArch64 register \"{register}\" (known: {Known})");
    }

    // cpreg_vmstate_values[i] where cpreg_vmstate_indexes[i] is the id (only the first cpreg_vmstate_array_len are used).
    private static DeviceField SystemRegisterValue(VmsdState s, ulong id, string name)
    {
        IReadOnlyList<DeviceField> ids = s.Field("cpreg_vmstate_indexes")?.Elements ?? throw new InvalidEditException(name, "the cpu section has no cpreg_vmstate_indexes");
        IReadOnlyList<DeviceField> values = s.Field("cpreg_vmstate_values")?.Elements ?? throw new InvalidEditException(name, "the cpu section has no cpreg_vmstate_values");
        int used = s.Field("cpreg_vmstate_array_len") is DeviceField len ? (int)Math.Clamp(len.SignedInteger, 0, Math.Min(ids.Count, values.Count)) : Math.Min(ids.Count, values.Count);
        for (int i = 0; i < used; i++)
        {
            if (ids[i].Integer == id)
            {
                return values[i];
            }
        }

        throw new InvalidEditException(name, $"{name} is not in the cpu section's cpreg list");
    }

    private static void SetPstate(MigrationStreamEditor stream, DeviceField cpsr, ulong value, string register)
    {
        if (value > uint.MaxValue)
        {
            throw new InvalidEditException(register, $"PSTATE is 32 bits in the cpu section; 0x{value:x} does not fit");
        }

        if ((value & 0x10) != 0)
        {
            throw new InvalidEditException(register, $"PSTATE 0x{value:x} has M[4] (nRW) set: AArch32 state cannot be set on an AArch64 vCPU this way");
        }

        if (cpsr.Kind == FieldKind.Integer)
        {
            stream.SetField(cpsr, value);
            return;
        }

        byte[] be = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(be, (uint)value);
        stream.SetFieldBytes(cpsr, 0, be);
    }

    private static DeviceField Field(VmsdState s, string name, string register) =>
        s.Field(name) ?? throw new InvalidEditException(register, $"the cpu section has no field {name}");

    private static DeviceField Element(VmsdState s, string name, int index, string register)
    {
        IReadOnlyList<DeviceField> elements = Field(s, name, register).Elements ?? [];
        return index < elements.Count ? elements[index] : throw new InvalidEditException(register, $"the cpu section's {name} has {elements.Count} elements, not {index + 1}");
    }
}
