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
/// id in cpreg_vmstate_indexes (written back into the CPU by QEMU's cpu_post_load, write_list_to_cpustate); V0–V31,
/// FPSR and FPCR in the "cpu/vfp" subsection: env.vfp.zregs[n].d[0..1] and the "fpscr" VMStateInfo (get_fpscr/put_fpscr,
/// a big-endian FPSR|FPCR that vfp_set_fpscr splits again).
/// </summary>
/// <remarks>
/// SVE: Vn is the low 128 bits of Zn and QEMU keeps one copy of them, env.vfp.zregs[n].d[0..1], which only the vfp
/// subsection carries; the "cpu/sve" subsection holds d[2..] (vmstate_zreg_hi_reg, "The first two words of each Zreg
/// is stored in VFP state"). An edit of vN therefore changes Zn's low 128 bits and leaves its upper bits as they were,
/// as a write of vN through QEMU's gdbstub does (aarch64_fpu_gdb_set_reg), not as an AdvSIMD instruction would
/// (which zeroes them).
/// </remarks>
internal static class Arm64RegisterFields
{
    /// <summary>The register names <see cref="Set(MigrationStreamEditor, DeviceState, Arm64CpuState, string, UInt128)"/> takes besides the system registers.</summary>
    public const string Known = "x0-x30 (lr, fp), sp, pc, pstate (cpsr), sp_el0-sp_el3, elr_el1-elr_el3, spsr_el1, v0-v31 (q0-q31, 128 bits), fpsr, fpcr, and the system registers of the cpreg list by name (TTBR0_EL1, TPIDR_EL1, ...)";

    /// <summary>The bits of FPSR QEMU 7.2 keeps (target/arm/cpu.h FPSR_MASK: N, Z, C, V, QC, IDC, IXC, UFC, OFC, DZC, IOC).</summary>
    public const uint FpsrMask = 0xF800_009F;

    /// <summary>The bits of FPCR QEMU 7.2 keeps: FPCR_MASK (0x07ff9f00) without the trap enables IOE, DZE, OFE, UFE,
    /// IXE, IDE (bits 8–12, 15), which vfp_set_fpscr treats as RAZ/WI ("We don't implement trapped exception handling").</summary>
    public const uint FpcrKept = 0x07FF_0000;

    private const uint FpcrTrapEnables = 0x0000_9F00;


    /// <summary>Sets <paramref name="register"/> of the vCPU whose section is <paramref name="section"/>; returns its canonical name.</summary>
    /// <exception cref="InvalidEditException">An unknown register, or a field the section lacks.</exception>
    /// <remarks>v0–v31 (alias q0–q31) take 128-bit values; every other register at most 64 bits.</remarks>
    public static string Set(MigrationStreamEditor stream, DeviceState section, Arm64CpuState cpu, string register, UInt128 wide)
    {
        VmsdState s = section.State!;
        string n = register.ToLowerInvariant();
        n = n switch { "lr" => "x30", "fp" => "x29", "cpsr" => "pstate", _ => n };
        if (VectorIndex(n) is int vi)
        {
            SetVector(stream, s, vi, wide, register);
            return $"v{vi}";
        }

        if (wide > ulong.MaxValue)
        {
            throw new InvalidEditException(register, $"{register} is a 64-bit register; 0x{wide:x} has {128 - UInt128.LeadingZeroCount(wide)} bits (128-bit values are for v0-v31)");
        }

        ulong value = (ulong)wide;
        if (n is "fpsr" or "fpcr")
        {
            SetFpscrPart(stream, s, n == "fpsr", value, register);
            return n;
        }

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

    /// <summary>The index of "v0".."v31" or "q0".."q31" (lower case), or null.</summary>
    internal static int? VectorIndex(string lower) =>
        lower.Length is 2 or 3 && lower[0] is 'v' or 'q' && char.IsAsciiDigit(lower[1])
        && int.TryParse(lower.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out int i) && i <= 31 && (lower.Length == 2 || lower[1] != '0')
            ? i
            : null;

    /// <summary>
    /// The fpscr word with FPSR (<paramref name="fpsr"/> true) or FPCR replaced by <paramref name="value"/>, as QEMU's
    /// vfp_set_fpsr/vfp_set_fpcr compose it: (fpscr &amp; ~MASK) | value.
    /// </summary>
    /// <exception cref="InvalidEditException">The value has bits QEMU 7.2 does not keep in that register.</exception>
    internal static uint ComposeFpscr(uint fpscr, bool fpsr, ulong value, string register)
    {
        string name = fpsr ? "FPSR" : "FPCR";
        if (value > uint.MaxValue)
        {
            throw new InvalidEditException(register, $"{name} is 32 bits; 0x{value:x} does not fit");
        }

        uint v = (uint)value;
        uint mask = fpsr ? FpsrMask : 0x07FF_9F00;
        if ((v & ~mask) != 0)
        {
            throw new InvalidEditException(register, fpsr
                ? $"FPSR 0x{v:x} sets bits 0x{v & ~mask:x} that are RES0 (FPSR holds N, Z, C, V, QC, IDC, IXC, UFC, OFC, DZC, IOC: mask 0x{FpsrMask:x8})"
                : $"FPCR 0x{v:x} sets bits 0x{v & ~mask:x} that are not FPCR bits QEMU 7.2 saves (mask 0x{mask:x8})");
        }

        if (!fpsr && (v & FpcrTrapEnables) != 0)
        {
            throw new InvalidEditException(register, $"FPCR 0x{v:x} sets trap-enable bits 0x{v & FpcrTrapEnables:x} (IOE, DZE, OFE, UFE, IXE, IDE), which QEMU 7.2 does not implement and drops on load (RAZ/WI); FPCR keeps 0x{FpcrKept:x8}");
        }

        return (fpscr & ~mask) | v;
    }

    private static void SetVector(MigrationStreamEditor stream, VmsdState s, int index, UInt128 value, string register)
    {
        VmsdState vfp = s.Subsection("cpu/vfp") ?? throw new InvalidEditException(register, "the cpu section has no cpu/vfp subsection (a vCPU without FP/SIMD)");
        IReadOnlyList<DeviceField> d = vfp.Field($"env.vfp.zregs[{index}].d")?.Elements ?? throw new InvalidEditException(register, $"the cpu/vfp subsection has no field env.vfp.zregs[{index}].d");
        if (d.Count != 2)
        {
            throw new InvalidEditException(register, $"env.vfp.zregs[{index}].d of the cpu/vfp subsection has {d.Count} elements, not 2 (d[0] the low and d[1] the high doubleword)");
        }

        stream.SetField(d[0], (ulong)value);
        stream.SetField(d[1], (ulong)(value >> 64));
    }

    private static void SetFpscrPart(MigrationStreamEditor stream, VmsdState s, bool fpsr, ulong value, string register)
    {
        VmsdState vfp = s.Subsection("cpu/vfp") ?? throw new InvalidEditException(register, "the cpu section has no cpu/vfp subsection (a vCPU without FP/SIMD)");
        DeviceField fpscr = vfp.Field("fpscr") ?? throw new InvalidEditException(register, "the cpu/vfp subsection has no field fpscr");
        if (fpscr.Size != 4)
        {
            throw new InvalidEditException(register, $"fpscr of the cpu/vfp subsection is {fpscr.Size} bytes, not 4");
        }

        // Both FPSR and FPCR live in this one word: compose with what earlier edits left in it.
        byte[] current = stream.CurrentBytes(fpscr);
        uint composed = ComposeFpscr(BinaryPrimitives.ReadUInt32BigEndian(current), fpsr, value, register);
        byte[] be = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(be, composed);
        if (fpscr.Kind == FieldKind.Integer)
        {
            stream.SetField(fpscr, composed);
        }
        else
        {
            stream.SetFieldBytes(fpscr, 0, be);
        }

        // FPCR and FPSR are also AArch64 cpregs without ARM_CP_NO_RAW (QEMU 7.2 target/arm/helper.c v8_cp_reginfo), so
        // the cpreg list carries them too, and cpu_post_load's write_list_to_cpustate runs after the vfp subsection
        // was loaded: the list's value is the one the vCPU ends up with (aa64_fpsr_write/aa64_fpcr_write). Both copies
        // get the new value.
        if (FindCpregValue(s, fpsr ? FpsrKvmId : FpcrKvmId) is DeviceField listed)
        {
            stream.SetField(listed, value);
        }
    }

    // KVM-style ids of FPCR (op0 3, op1 3, CRn 4, CRm 4, op2 0) and FPSR (op2 1).
    private const ulong FpcrKvmId = 0x6030_0000_0013_DA20;
    private const ulong FpsrKvmId = 0x6030_0000_0013_DA21;

    // cpreg_vmstate_values[i] where cpreg_vmstate_indexes[i] is the id (only the first cpreg_vmstate_array_len are used).
    private static DeviceField SystemRegisterValue(VmsdState s, ulong id, string name)
    {
        _ = s.Field("cpreg_vmstate_indexes")?.Elements ?? throw new InvalidEditException(name, "the cpu section has no cpreg_vmstate_indexes");
        _ = s.Field("cpreg_vmstate_values")?.Elements ?? throw new InvalidEditException(name, "the cpu section has no cpreg_vmstate_values");
        return FindCpregValue(s, id) ?? throw new InvalidEditException(name, $"{name} is not in the cpu section's cpreg list");
    }

    private static DeviceField? FindCpregValue(VmsdState s, ulong id)
    {
        if (s.Field("cpreg_vmstate_indexes")?.Elements is not { } ids || s.Field("cpreg_vmstate_values")?.Elements is not { } values)
        {
            return null;
        }

        int used = s.Field("cpreg_vmstate_array_len") is DeviceField len ? (int)Math.Clamp(len.SignedInteger, 0, Math.Min(ids.Count, values.Count)) : Math.Min(ids.Count, values.Count);
        for (int i = 0; i < used; i++)
        {
            if (ids[i].Integer == id)
            {
                return values[i];
            }
        }

        return null;
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
