using System.Buffers.Binary;
using VmState.Arch.Arm64;
using VmState.Editing;
using VmState.Machine;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests.Arm64;

/// <summary>
/// Editing V0–V31, FPSR and FPCR of an AArch64 snapshot: a stream built as QEMU 7.2 writes an AArch64 "cpu" section
/// (target/arm/machine.c: the cpu/vfp subsection with env.vfp.zregs[n].d[0..1] and the big-endian "fpscr", and with
/// SVE the cpu/sve subsection with d[2..] of every Z register), edited, written and read back.
/// </summary>
public sealed class Arm64FpSimdEditTests : IDisposable
{
    private const ulong FpcrId = 0x6030_0000_0013_DA20;
    private const ulong FpsrId = 0x6030_0000_0013_DA21;
    private const int SveHighWords = 30; // ARM_MAX_VQ 16: d[2..31] of each Z register in cpu/sve
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-arm64-fp-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Be(ulong v, int size) => StreamBuilder.Be(v, size);

    private static StreamBuilder.Device Cpu(int index, bool vfp, bool sve, uint fpscr)
    {
        var d = new StreamBuilder.Device("cpu", index, "cpu", 22);
        d.Fields.Add(StreamBuilder.Field.Array("env.xregs", "uint64", 8, [.. Enumerable.Range(0, 32).Select(i => Be(0x1000UL + (ulong)i, 8))]));
        d.Fields.Add(StreamBuilder.Field.Int("env.pc", "uint64", 8, 0xffff_8000_0810_0000UL));
        d.Fields.Add(new StreamBuilder.Field("cpsr", "cpsr", 4, Be(0x3C5, 4)));
        d.Fields.Add(StreamBuilder.Field.Array("env.banked_spsr", "uint64", 8, [.. Enumerable.Range(0, 8).Select(_ => Be(0, 8))]));
        d.Fields.Add(StreamBuilder.Field.Array("env.elr_el", "uint64", 8, [.. Enumerable.Range(0, 4).Select(_ => Be(0, 8))]));
        d.Fields.Add(StreamBuilder.Field.Array("env.sp_el", "uint64", 8, [.. Enumerable.Range(0, 4).Select(_ => Be(0, 8))]));

        // FPCR and FPSR are in the cpreg list as well (QEMU 7.2 helper.c: AArch64 cpregs without ARM_CP_NO_RAW).
        d.Fields.Add(StreamBuilder.Field.Int("cpreg_vmstate_array_len", "int32", 4, 3));
        d.Fields.Add(StreamBuilder.Field.Array("cpreg_vmstate_indexes", "uint64", 8, [Be(Arm64SystemRegisters.TcrEl1.KvmId, 8), Be(FpcrId, 8), Be(FpsrId, 8)]));
        d.Fields.Add(StreamBuilder.Field.Array("cpreg_vmstate_values", "uint64", 8, [Be(0x15, 8), Be(fpscr & 0x07FF_9F00, 8), Be(fpscr & 0xF800_009F, 8)]));
        if (vfp)
        {
            var v = new StreamBuilder.Device("cpu/vfp", 0, "cpu/vfp", 3);
            for (int i = 0; i < 32; i++)
            {
                v.Fields.Add(StreamBuilder.Field.Array($"env.vfp.zregs[{i}].d", "uint64", 8, [Be(0xA0UL + (ulong)i, 8), Be(0xB0UL + (ulong)i, 8)]));
            }

            v.Fields.Add(new StreamBuilder.Field("fpscr", "fpscr", 4, Be(fpscr, 4)));
            d.Subsections.Add(v);
        }

        if (sve)
        {
            // VMSTATE_STRUCT_ARRAY(env.vfp.zregs, 32, vmstate_zreg_hi_reg): each element d[2..31].
            var zregs = new List<StreamBuilder.Field>();
            for (int i = 0; i < 32; i++)
            {
                zregs.Add(new StreamBuilder.Field("env.vfp.zregs", "struct", SveHighWords * 8, null,
                    [StreamBuilder.Field.Array("d", "uint64", 8, [.. Enumerable.Range(2, SveHighWords).Select(w => Be(((ulong)i << 32) | (uint)w, 8))])]));
            }

            var s = new StreamBuilder.Device("cpu/sve", 0, "cpu/sve", 1);
            s.Fields.Add(new StreamBuilder.Field("env.vfp.zregs", "struct", SveHighWords * 8, null, zregs, ArrayLength: 32));
            d.Subsections.Add(s);
        }

        return d;
    }

    private string Stream(bool vfp = true, bool sve = true, uint fpscr = 0x0800_0010 | 0x00C0_0000)
    {
        var b = new StreamBuilder("virt-7.2").Block("mach-virt.ram", 1 << 20).Page("mach-virt.ram", 0, new byte[4096]);
        b.AddDevice(Cpu(0, vfp, sve, fpscr));
        b.AddDevice(Cpu(1, vfp, sve, fpscr));
        string path = Path.Combine(_dir, $"arm64-{vfp}-{sve}.mig");
        File.WriteAllBytes(path, b.Build());
        return path;
    }

    private static UInt128 V(Arm64CpuState c, int i) => new(BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan((i * 16) + 8)), BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan(i * 16)));

    // The cpu/sve subsection's words of Z<n> above the first 128 bits, as the stream holds them.
    private static ulong[] SveHigh(MachineState m, int cpu, int n)
    {
        DeviceState section = m.Devices.Single(d => d.IdStr == "cpu" && d.InstanceId == cpu);
        DeviceField z = section.State!.Subsection("cpu/sve")!.Field("env.vfp.zregs")!.Elements![n];
        return [.. z.Struct!.Field("d")!.Elements!.Select(e => e.Integer)];
    }

    [Fact]
    public void Vector_fpsr_and_fpcr_edits_read_back_and_leave_the_rest()
    {
        string path = Stream();
        string edited = Path.Combine(_dir, "edited.mig");
        UInt128 v5 = new(0x0011_2233_4455_6677, 0x8899_aabb_ccdd_eeff);
        using (MachineState m = SnapshotLoader.Open(path))
        {
            var e = new SnapshotEditor(m);
            e.SetRegister(1, "v5", v5);
            e.SetRegister(1, "Q31", 0x42UL);          // alias, zero-extended to 128 bits
            e.SetRegister(1, "fpsr", 0x8000_0001UL);   // N and IOC; FPCR must stay
            e.SetRegister(1, "FPCR", 0x0340_0000UL);   // DN, FZ, RMode=1; FPSR must stay
            e.Save(edited);
            Assert.Contains("vCPU 1: v5 = 0x00112233445566778899aabbccddeeff", e.Log);
            Assert.Contains("vCPU 1: fpcr = 0x3400000", e.Log);
        }

        using MachineState before = SnapshotLoader.Open(path);
        using MachineState after = SnapshotLoader.Open(edited);
        Arm64CpuState c = after.Arm64Cpus[1];
        Assert.Equal(v5, V(c, 5));
        Assert.Equal((UInt128)0x42, V(c, 31));
        Assert.Equal(0x8000_0001U, c.Fpsr);
        Assert.Equal(0x0340_0000U, c.Fpcr);

        // The cpreg list's copies, which QEMU's cpu_post_load writes into the vCPU after the vfp subsection.
        Assert.Equal(0x8000_0001UL, c.SystemRegister(FpsrId));
        Assert.Equal(0x0340_0000UL, c.SystemRegister(FpcrId));
        Assert.Equal(0x15UL, c.SystemRegister(Arm64SystemRegisters.TcrEl1.KvmId));
        Assert.Equal(before.Arm64Cpus[0].SystemRegister(FpsrId), after.Arm64Cpus[0].SystemRegister(FpsrId));
        for (int i = 0; i < 31; i++)
        {
            if (i != 5)
            {
                Assert.Equal(V(before.Arm64Cpus[1], i), V(c, i));
            }
        }

        Assert.Equal(before.Arm64Cpus[0].V, after.Arm64Cpus[0].V);
        Assert.Equal((before.Arm64Cpus[0].Fpsr, before.Arm64Cpus[0].Fpcr), (after.Arm64Cpus[0].Fpsr, after.Arm64Cpus[0].Fpcr));
        Assert.Equal(before.Arm64Cpus[1].X, c.X);

        // SVE: Z5's bits above 128 (the cpu/sve subsection) are as they were; the new V5 is Z5's low 128 bits.
        Assert.Equal(SveHigh(before, 1, 5), SveHigh(after, 1, 5));
        Assert.Equal((5UL << 32) | 2, SveHigh(after, 1, 5)[0]);
        Assert.Equal(new FileInfo(path).Length, new FileInfo(edited).Length);
    }

    [Fact]
    public void Without_sve_the_vfp_subsection_alone_is_edited()
    {
        string path = Stream(sve: false);
        string edited = Path.Combine(_dir, "edited-nosve.mig");
        using (MachineState m = SnapshotLoader.Open(path))
        {
            var e = new SnapshotEditor(m);
            e.SetRegister(0, "v0", UInt128.MaxValue);
            e.Save(edited);
        }

        using MachineState after = SnapshotLoader.Open(edited);
        Assert.Equal(UInt128.MaxValue, V(after.Arm64Cpus[0], 0));
    }

    [Theory]
    [InlineData("v32", "0x1", "unknown AArch64 register \"v32\"")]
    [InlineData("v05", "0x1", "unknown AArch64 register")]
    [InlineData("z5", "0x1", "unknown AArch64 register")]
    [InlineData("x5", "0x1_0000_0000_0000_0000", "x5 is a 64-bit register; 0x10000000000000000 has 65 bits")]
    [InlineData("fpsr", "0x100000000", "FPSR is 32 bits")]
    [InlineData("fpsr", "0x100", "FPSR 0x100 sets bits 0x100 that are RES0")]
    [InlineData("fpcr", "0x1", "FPCR 0x1 sets bits 0x1 that are not FPCR bits QEMU 7.2 saves (mask 0x07ff9f00)")]
    [InlineData("fpcr", "0x00400100", "trap-enable bits 0x100 (IOE, DZE, OFE, UFE, IXE, IDE)")]
    public void Bad_edits_name_the_register_and_why(string register, string value, string message)
    {
        using MachineState m = SnapshotLoader.Open(Stream());
        var e = new SnapshotEditor(m);
        InvalidEditException x = Assert.Throws<InvalidEditException>(() => e.SetRegister(0, register, SnapshotEditor.ParseRegisterValue(value, "--set-reg")));
        Assert.Contains(message, x.Message, StringComparison.Ordinal);
        Assert.Equal(0, e.Stream.EditedFields);
    }

    [Fact]
    public void A_vcpu_without_fp_simd_says_so()
    {
        using MachineState m = SnapshotLoader.Open(Stream(vfp: false, sve: false));
        var e = new SnapshotEditor(m);
        Assert.Contains("no cpu/vfp subsection", Assert.Throws<InvalidEditException>(() => e.SetRegister(0, "v1", 1UL)).Message, StringComparison.Ordinal);
        Assert.Contains("no cpu/vfp subsection", Assert.Throws<InvalidEditException>(() => e.SetRegister(0, "fpcr", 0UL)).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0x00112233445566778899aabbccddeeff", 0x0011223344556677UL, 0x8899aabbccddeeffUL)]
    [InlineData("0x0011223344556677_8899aabbccddeeff", 0x0011223344556677UL, 0x8899aabbccddeeffUL)]
    [InlineData("0XFF", 0UL, 0xffUL)]
    [InlineData("340282366920938463463374607431768211455", ulong.MaxValue, ulong.MaxValue)]
    [InlineData("18446744073709551616", 1UL, 0UL)]
    [InlineData(" 42 ", 0UL, 42UL)]
    [InlineData("-1", 0UL, ulong.MaxValue)]
    public void Register_values_parse_up_to_128_bits(string text, ulong upper, ulong lower) =>
        Assert.Equal(new UInt128(upper, lower), SnapshotEditor.ParseRegisterValue(text, "--set-reg"));

    [Theory]
    [InlineData("0x100112233445566778899aabbccddeeff", "more than 32 hex digits")]
    [InlineData("340282366920938463463374607431768211456", "at most 128 bits")]
    [InlineData("0x", "is not a number")]
    [InlineData("0x_1", "is not a number")]
    [InlineData("0x1__2", "is not a number")]
    [InlineData("0x1_", "is not a number")]
    [InlineData("0xg", "is not a number")]
    [InlineData("1.5", "is not a number")]
    [InlineData("-0x1_0000_0000_0000_0000", "is not a number")]
    public void Bad_register_values_are_argument_errors(string text, string message)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => SnapshotEditor.ParseRegisterValue(text, "--set-reg"));
        Assert.Contains("--set-reg", e.Message, StringComparison.Ordinal);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0x08C0_0010U, true, 0x8000_0001UL, 0x80C0_0001U)]   // FPSR replaced, FPCR (RMode=3) kept
    [InlineData(0x08C0_0010U, false, 0x0100_0000UL, 0x0900_0010U)]  // FPCR replaced (FZ), FPSR (QC, IXC) kept
    [InlineData(0xFFFF_FFFFU, false, 0UL, 0xF800_60FFU)]           // FPCR cleared: the bits outside both masks stay as they were
    public void Fpscr_is_composed_as_qemu_composes_it(uint fpscr, bool fpsr, ulong value, uint expected) =>
        Assert.Equal(expected, Arm64RegisterFields.ComposeFpscr(fpscr, fpsr, value, "r"));

    [Fact]
    public void X86_registers_refuse_128_bit_values()
    {
        var b = new StreamBuilder().Block("pc.ram", 1 << 20).Page("pc.ram", 0, new byte[4096]);
        b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0);
        string path = Path.Combine(_dir, "x86.mig");
        File.WriteAllBytes(path, b.Build());
        using MachineState m = SnapshotLoader.Open(path);
        var e = new SnapshotEditor(m);
        Assert.Contains("does not fit in 64 bits", Assert.Throws<InvalidEditException>(() => e.SetRegister(0, "rax", UInt128.MaxValue)).Message, StringComparison.Ordinal);
        e.SetRegister(0, "rax", (UInt128)7);
        Assert.Equal(1, e.Stream.EditedFields);
    }
}
