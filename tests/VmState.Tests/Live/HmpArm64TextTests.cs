using System.Buffers.Binary;
using VmState.Arch.Arm64;
using VmState.Live;

namespace VmState.Tests.Live;

/// <summary>
/// QEMU 7.2's AArch64 "info registers -a" text (captured from the arm64 fixture guest, -cpu max with SVE, and the
/// Q-register form of a CPU without SVE) and the gdbstub's system-register description.
/// </summary>
public class HmpArm64TextTests
{
    private const string Sve = """
        CPU#0
         PC=ffffd2fe598da26c X00=000000000000c724 X01=ffff00000ff1c618
        X02=ffff2d01b5b08000 X03=ffff2d01b5b08000 X04=ffff2d01b5b08000
        X05=4000000000000000 X06=000000004e9e2a7f X07=0000000000000004
        X08=ffffd2fe5a8c9da8 X09=ffffd2fe58cf8cac X10=a220266d2b8a4b0f
        X11=00000000000000c0 X12=0000000000000001 X13=ffffd2fe5a8be9b0
        X14=0000000000000000 X15=ffff00000ff3f000 X16=00000000136dcdcd
        X17=ffffd2fe5aac7dc8 X18=ffff80000804bbf8 X19=ffffd2fe5a404008
        X20=ffffd2fe5a404008 X21=ffffd2fe5a8be888 X22=ffffd2fe5a416670
        X23=ffffd2fe5a8be9d0 X24=0000000000000000 X25=0000000000000000
        X26=ffffd2fe5a8c8dc0 X27=0000000000000000 X28=0000000041868d6c
        X29=ffffd2fe5a8b3d50 X30=34e5d2fe598da284  SP=ffffd2fe5a8b3d50
        PSTATE=404000c5 -Z-- EL1h  SVCR=00000000 --  BTYPE=0     FPCR=00000000 FPSR=00000010
        P00=0000 P01=0000 P02=0000 P03=0000 P04=0000 P05=0000 P06=0000 P07=0000
        FFR=0000
        Z00=0000000000000000:0000000000000000 Z01=1111111111111111:2222222222222222
        Z30=0000000000000000:0000000000000000 Z31=aaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbb

        CPU#1
         PC=ffffd2fe58c9da60 X00=0000000000000000 X01=ffff00000ff3ef80
        X29=ffff80000817bba0 X30=ffffd2fe58fd4e0c  SP=ffff80000817bba0
        PSTATE=204000c5 --C- EL1h  SVCR=00000000 --  BTYPE=0     FPCR=00000000 FPSR=00000000
        """;

    // The same guest at another moment: the kernel's ZCR_EL1 gives a 512-bit vector length, printed in chunks.
    private const string SveChunks = """
        CPU#1
         PC=ffffcb019ceba2c4 X00=ffff000002c3b1c4 X01=ffff000002c3c000
        X29=ffff80000831b6f0 X30=ffffcb019cebf914  SP=ffff80000831b6f0
        PSTATE=404000c5 -Z-- EL1h  SVCR=00000000 --  BTYPE=0     FPCR=00c00000 FPSR=08000000
        P00=0000000000000001 P01=0000000000000000 P02=0000000000000000
        P15=0000000000000000 FFR=0000000000000000
        Z00[3-2]=0000000000000000:0000000000000000:0000000000000000:0000000000000000
           [1-0]=0000000000000000:0000000000000000:6c6c6c6c6c6c6c6c:6d6c6c6c6c6c6c6c
        Z01[3-2]=0000000000000000:0000000000000000:0000000000000000:0000000000000000
           [1-0]=0000000000000000:0000000000000000:0000000000000000:0000004c636d776c
        Z31[3-2]=0000000000000000:0000000000000000:0000000000000000:0000000000000000
           [1-0]=1111111111111111:2222222222222222:3866313932343832:3739633339646231
        """;

    [Fact]
    public void Sve_text_in_chunks_gives_v_as_the_low_128_bits_of_z()
    {
        Arm64CpuState c = Assert.Single(HmpText.ParseArm64Registers(SveChunks));
        Assert.Equal(1, c.Index);
        Assert.Equal(0xffff80000831b6f0UL, c.Sp);
        Assert.Equal(0x00c00000U, c.Fpcr);
        Assert.Equal(0x08000000U, c.Fpsr);
        Assert.True(c.HasFpSimd);
        Assert.Equal(0x6d6c6c6c6c6c6c6cUL, BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan(0)));
        Assert.Equal(0x6c6c6c6c6c6c6c6cUL, BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan(8)));
        Assert.Equal(0x4c636d776cUL, BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan(16)));
        Assert.Equal("1bd93c97284291f8", System.Text.Encoding.ASCII.GetString(c.V.AsSpan(31 * 16, 16)));
    }

    private const string NoSve = """
        CPU#0
         PC=ffff800008010000 X00=0000000000000001 X01=0000000000000002
        X29=0000000000000000 X30=0000000000000000  SP=ffff80000a000000
        PSTATE=600003c5 -ZC- EL1h     FPCR=00000000 FPSR=00000000
        Q00=0123456789abcdef:fedcba9876543210 Q01=0000000000000000:0000000000000000
        """;

    [Fact]
    public void Sve_text_gives_the_general_registers_and_v_as_the_low_128_bits_of_z()
    {
        IReadOnlyList<Arm64CpuState> cpus = HmpText.ParseArm64Registers(Sve);
        Assert.Equal([0, 1], cpus.Select(c => c.Index));
        Arm64CpuState c = cpus[0];
        Assert.Equal(0xffffd2fe598da26cUL, c.Pc);
        Assert.Equal(0xffffd2fe5a8b3d50UL, c.Sp);
        Assert.Equal(0x404000c5U, c.Pstate);
        Assert.Equal(1, c.ExceptionLevel);
        Assert.Equal(0xc724UL, c.X[0]);
        Assert.Equal(0xa220266d2b8a4b0fUL, c.X[10]);
        Assert.Equal(0x34e5d2fe598da284UL, c.X[30]);
        Assert.Equal(0x10U, c.Fpsr);
        Assert.True(c.HasFpSimd);
        Assert.Equal(0x2222222222222222UL, BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan(16)));
        Assert.Equal(0x1111111111111111UL, BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan(24)));
        Assert.Equal(0xbbbbbbbbbbbbbbbbUL, BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan(31 * 16)));
        Assert.Equal(0xffff80000817bba0UL, cpus[1].X[29]);
        Assert.Equal(0x204000c5U, cpus[1].Pstate);
        Assert.False(cpus[1].HasFpSimd);
    }

    [Fact]
    public void Q_registers_without_sve_and_no_system_registers_in_the_text()
    {
        Arm64CpuState c = Assert.Single(HmpText.ParseArm64Registers(NoSve));
        Assert.Equal(0xffff800008010000UL, c.Pc);
        Assert.Equal(0x600003c5U, c.Pstate);
        Assert.Equal(0xfedcba9876543210UL, BinaryPrimitives.ReadUInt64LittleEndian(c.V));
        Assert.Equal(0x0123456789abcdefUL, BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan(8)));
        Assert.Empty(c.SystemRegisterIds);
    }

    [Theory]
    [InlineData("CPU#0\nX31=0000000000000001 X99=1 PC=zz SP=00000000000000001\n")]
    [InlineData("CPU#99999999999999999999\n PC=1\n")]
    [InlineData("PC=0000000000000001 before any CPU line\n")]
    public void Malformed_text_gives_fewer_registers_not_an_exception(string text)
    {
        foreach (Arm64CpuState c in HmpText.ParseArm64Registers(text))
        {
            Assert.Equal(0UL, c.Pc);
            Assert.Equal(0UL, c.Sp);
        }
    }

    [Fact]
    public void The_gdbstub_description_numbers_system_registers_as_qemu_does()
    {
        const string Target = """<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target><architecture>aarch64</architecture><xi:include href="aarch64-core.xml"/><xi:include href="sve-registers.xml"/><xi:include href="system-registers.xml"/></target>""";
        const string Sys = """<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><feature name="org.qemu.gdb.arm.sys.regs"><reg name="SP_EL0" bitsize="64" regnum="138" group="cp_regs"/><reg name="TTBR0_EL1" bitsize="64" regnum="171" group="cp_regs"/><reg name="SCTLR" bitsize="64" regnum="172"/><reg name="NEXT" bitsize="64"/><reg bitsize="64" regnum="9"/><reg name="SP_EL0" bitsize="64" regnum="1"/></feature>""";
        Assert.Equal(["aarch64-core.xml", "sve-registers.xml", "system-registers.xml"], Arm64GdbstubRegisters.ParseIncludes(Target));
        IReadOnlyDictionary<string, int> n = Arm64GdbstubRegisters.ParseRegisterNumbers(Sys);
        Assert.Equal(138, n["SP_EL0"]);
        Assert.Equal(171, n["TTBR0_EL1"]);
        Assert.Equal(172, n["SCTLR"]);
        Assert.Equal(173, n["NEXT"]);
        Assert.Equal(4, n.Count);
    }
}
