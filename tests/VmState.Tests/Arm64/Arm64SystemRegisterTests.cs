using VmState.Arch;
using VmState.Arch.Arm64;

namespace VmState.Tests.Arm64;

public class Arm64SystemRegisterTests
{
    // KVM ids as QEMU's cpreg list carries them (research note §8; target/arm/kvm-consts.h encoding), and the ids of
    // a real QEMU 7.2 -cpu max stream (TCR_EL1, MAIR_EL1, VBAR_EL1 seen in cpreg_vmstate_indexes).
    [Theory]
    [InlineData("TTBR0_EL1", 0x603000000013C100UL)]
    [InlineData("TTBR1_EL1", 0x603000000013C101UL)]
    [InlineData("TCR_EL1", 0x603000000013C102UL)]
    [InlineData("TPIDR_EL1", 0x603000000013C684UL)]
    [InlineData("SCTLR_EL1", 0x603000000013C080UL)]
    [InlineData("MAIR_EL1", 0x603000000013C510UL)]
    [InlineData("VBAR_EL1", 0x603000000013C600UL)]
    public void Named_registers_have_their_kvm_ids(string name, ulong id)
    {
        Arm64SystemRegister r = Arm64SystemRegisters.FindByName(name) ?? throw new InvalidOperationException(name);
        Assert.Equal(id, r.KvmId);
        Assert.Same(r, Arm64SystemRegisters.FindById(id));
        Assert.Equal(name, Arm64SystemRegisters.NameOf(id));
    }

    [Fact]
    public void Unnamed_ids_get_generic_or_hex_names()
    {
        Assert.Equal("S3_0_C0_C4_0", Arm64SystemRegisters.NameOf(Arm64SystemRegister.Encode(3, 0, 0, 4, 0)));
        Assert.Equal("0x40200000200e0000", Arm64SystemRegisters.NameOf(0x40200000200e0000UL));
    }

    [Fact]
    public void Cpu_state_finds_registers_by_name()
    {
        var c = new Arm64CpuState { Pc = 0xffff_0000_1234_0000UL, Sp = 0x8000, Pstate = 0x3C5 };
        c.X[0] = 7;
        c.X[30] = 0x30;
        c.SpEl[0] = 0x1111;
        c.ElrEl[1] = 0x2222;
        c.SetSystemRegister(Arm64SystemRegisters.Ttbr1El1.KvmId, 0x4185_8001);
        c.SetSystemRegister(Arm64SystemRegister.Encode(3, 0, 0, 4, 0), 0x11);
        Assert.Equal(7UL, c.GetRegister("X0"));
        Assert.Equal(0x30UL, c.GetRegister("lr"));
        Assert.Equal(0x8000UL, c.GetRegister("sp"));
        Assert.Equal(0x1111UL, c.GetRegister("sp_el0"));
        Assert.Equal(0x2222UL, c.GetRegister("elr_el1"));
        Assert.Equal(0x4185_8001UL, c.GetRegister("ttbr1_el1"));
        Assert.Equal(0x11UL, c.GetRegister("S3_0_C0_C4_0"));
        Assert.Null(c.GetRegister("x31"));
        Assert.Null(c.GetRegister("TCR_EL1"));
        Assert.Equal("EL1h", c.DescribeMode());
        Assert.Equal(1, c.ExceptionLevel);
        IVcpuState v = c;
        Assert.Equal(CpuArchitecture.Arm64, v.Architecture.Kind);
        Assert.Equal(c.Pc, v.ProgramCounter);
    }

    [Fact]
    public void Register_file_follows_gdb_aarch64_numbering()
    {
        IArchitecture a = Arm64Architecture.Instance;
        Assert.Equal(68, a.Registers.Count);
        Assert.Equal(("sp", 31, 8), (a.Registers[31].Name, a.Registers[31].GdbNumber, a.Registers[31].Size));
        Assert.Equal(("pc", 32), (a.Registers[32].Name, a.Registers[32].GdbNumber));
        Assert.Equal(("cpsr", 33, 4), (a.Registers[33].Name, a.Registers[33].GdbNumber, a.Registers[33].Size));
        Assert.Equal(("v0", 34, 16), (a.Registers[34].Name, a.Registers[34].GdbNumber, a.Registers[34].Size));
        Assert.Equal(("fpcr", 67), (a.Registers[67].Name, a.Registers[67].GdbNumber));
        Assert.Equal(183, a.ElfMachine);
        Assert.Equal(["x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"], a.ArgumentRegisters);
    }
}
