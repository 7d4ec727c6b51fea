using System.Buffers.Binary;
using VmState.Arch.Arm64;
using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.IO;
using VmState.Machine;

namespace VmState.Tests.Arm64;

/// <summary>
/// The AArch64 "cpu" section decoder on sections built field by field as QEMU 7.2's vmdesc describes them
/// (target/arm/machine.c vmstate_arm_cpu v22), and the AArch64 core notes written from and read back into the state.
/// </summary>
public class Arm64CpuSectionTests
{
    private static DeviceField U64(string name, ulong v) => new(name, "uint64", FieldKind.Integer, 0, 8) { Integer = v };

    private static DeviceField U64Array(string name, IEnumerable<ulong> values) =>
        new(name, "uint64", FieldKind.Array, 0, 0) { Elements = [.. values.Select((v, i) => new DeviceField(name, "uint64", FieldKind.Integer, 0, 8) { Integer = v, Index = i })] };

    private static DeviceField Be32(string name, uint v)
    {
        byte[] b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        return new DeviceField(name, name, FieldKind.Bytes, 0, 4) { Bytes = b };
    }

    internal static DeviceState Section(int index, int cpregCount = 3, int cpregLen = 3, bool vfp = true)
    {
        var fields = new List<DeviceField>
        {
            U64Array("env.xregs", Enumerable.Range(0, 32).Select(i => 0x1000UL + (ulong)i)),
            U64("env.pc", 0xffff_8000_0810_0000UL + (ulong)index),
            Be32("cpsr", 0x6000_03C5),
            U64Array("env.banked_spsr", [0, 0x3C5, 0, 0, 0, 0, 0, 0]),
            U64Array("env.elr_el", [0, 0xffff_8000_0800_0000UL, 0, 0]),
            U64Array("env.sp_el", [0xffff_0000_0100_0000UL, 0xffff_8000_0a00_0000UL, 0, 0]),
            new("cpreg_vmstate_array_len", "int32 le", FieldKind.Integer, 0, 4) { Integer = (ulong)cpregLen, Signed = true },
            U64Array("cpreg_vmstate_indexes", new[] { Arm64SystemRegisters.TcrEl1.KvmId, Arm64SystemRegisters.Ttbr1El1.KvmId, Arm64SystemRegisters.SctlrEl1.KvmId }.Take(cpregCount)),
            U64Array("cpreg_vmstate_values", new[] { 0x15001f5b5503510UL, 0x4185_8001UL, 0x3454_0000_1UL }.Take(3)),
        };
        var subsections = new List<VmsdState>();
        if (vfp)
        {
            var v = new List<DeviceField>();
            for (int i = 0; i < 32; i++)
            {
                v.Add(U64Array($"env.vfp.zregs[{i}].d", [(ulong)i, (ulong)i << 32]));
            }

            v.Add(Be32("fpscr", 0x0800_0010 | 0x0040_0000));
            subsections.Add(new VmsdState("cpu/vfp", 3, 0, v, []));
        }

        return new DeviceState("cpu", index, 10 + index, 0, 0, new VmsdState("cpu", 22, 0, fields, subsections));
    }

    [Fact]
    public void Decodes_registers_system_registers_and_vfp()
    {
        DeviceState[] devices =
        [
            Section(1), Section(0),
            new("cpu_common", 0, 1, 0, 0, new VmsdState("cpu_common", 1, 0, [new DeviceField("halted", "uint32", FieldKind.Integer, 0, 4) { Integer = 1 }], [])),
        ];
        Assert.True(Arm64CpuSectionDecoder.IsArm(devices));
        IReadOnlyList<Arm64CpuState> cpus = Arm64CpuSectionDecoder.Decode(devices);
        Assert.Equal([0, 1], cpus.Select(c => c.Index));
        Arm64CpuState c = cpus[0];
        Assert.Equal(0x1000UL, c.X[0]);
        Assert.Equal(0x1000UL + 30, c.X[30]);
        Assert.Equal(0x1000UL + 31, c.Sp);
        Assert.Equal(0xffff_8000_0810_0000UL, c.Pc);
        Assert.Equal(0x6000_03C5U, c.Pstate);
        Assert.Equal(0xffff_8000_0800_0000UL, c.ElrEl[1]);
        Assert.Equal(0xffff_0000_0100_0000UL, c.SpEl[0]);
        Assert.Equal(0x3C5UL, c.BankedSpsr[1]);
        Assert.Equal(0x15001f5b5503510UL, c.TcrEl1);
        Assert.Equal(0x4185_8001UL, c.Ttbr1El1);
        Assert.True(c.MmuEnabled);
        Assert.True(c.HasFpSimd);
        Assert.Equal(0x0800_0010U, c.Fpsr);
        Assert.Equal(0x0040_0000U, c.Fpcr);
        Assert.Equal(31UL << 32, BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan((31 * 16) + 8)));
        Assert.True(c.Halted);
        Assert.Null(cpus[1].Halted);
    }

    [Fact]
    public void Array_len_limits_the_system_registers_used()
    {
        Arm64CpuState c = Arm64CpuSectionDecoder.DecodeOne(Section(0, cpregLen: 1));
        Assert.Equal([Arm64SystemRegisters.TcrEl1.KvmId], c.SystemRegisterIds);
        Assert.Null(c.SystemRegister(Arm64SystemRegisters.Ttbr1El1));
    }

    [Fact]
    public void Mismatched_cpreg_arrays_and_missing_fields_are_format_errors()
    {
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => Arm64CpuSectionDecoder.DecodeOne(Section(0, cpregCount: 2)));
        Assert.Contains("cpreg_vmstate_values", e.Message, StringComparison.Ordinal);
        DeviceState s = Section(0);
        var without = new DeviceState("cpu", 0, 1, 0, 0, new VmsdState("cpu", 22, 0, [.. s.State!.Fields.Where(f => f.Name != "env.pc")], []));
        Assert.Contains("env.pc", Assert.Throws<VmStateFormatException>(() => Arm64CpuSectionDecoder.DecodeOne(without)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Core_notes_have_the_linux_layout_and_read_back()
    {
        Arm64CpuState c = Arm64CpuSectionDecoder.DecodeOne(Section(3));
        ElfNote pr = Arm64CoreNotes.Prstatus(c);
        Assert.Equal(("CORE", 1U, 392), (pr.Name, pr.Type, pr.Descriptor.Length));
        Assert.Equal(4, BinaryPrimitives.ReadInt32LittleEndian(pr.Descriptor.AsSpan(32)));
        Assert.Equal(c.Pc, BinaryPrimitives.ReadUInt64LittleEndian(pr.Descriptor.AsSpan(112 + (32 * 8))));
        Assert.Equal(1, BinaryPrimitives.ReadInt32LittleEndian(pr.Descriptor.AsSpan(384)));
        ElfNote fp = Arm64CoreNotes.Fpregset(c);
        Assert.Equal(("CORE", 2U, 528), (fp.Name, fp.Type, fp.Descriptor.Length));
        Assert.Equal(c.Fpcr, BinaryPrimitives.ReadUInt32LittleEndian(fp.Descriptor.AsSpan(516)));

        var back = new Arm64CpuState();
        Arm64CoreNotes.ReadPrstatus(pr.Descriptor, back);
        Assert.Equal(c.X, back.X);
        Assert.Equal((c.Sp, c.Pc, c.Pstate), (back.Sp, back.Pc, back.Pstate));
        Assert.Throws<VmStateFormatException>(() => Arm64CoreNotes.ReadPrstatus(pr.Descriptor.AsSpan(0, 200), back));
    }
}
