using System.Buffers.Binary;
using System.Text;
using VmState.Arch.Arm64;
using VmState.Gdb;
using VmState.Machine;
using VmState.Tests.Arm64;

namespace VmState.Tests.Gdb;

/// <summary>
/// The GDB server on an AArch64 machine without a connection: gdb's aarch64 register numbering and target
/// description, the registers of the selected vCPU, virtual memory through TTBR0_EL1 or TTBR1_EL1 by bit 55.
/// </summary>
public sealed class Arm64GdbTargetTests
{
    private const ulong KernelVa = 0xffff_8000_0810_0000UL;
    private const ulong UserVa = 0x0000_aaaa_0000_0000UL;

    private static (MachineState Machine, Arm64TableBuilder Tables) Machine()
    {
        var tables = new Arm64TableBuilder(48);
        tables.Map(KernelVa, 0x4100_0000UL, 0x1000);
        tables.Map(UserVa, 0x4200_0000UL, 0x1000, user: true);
        tables.WriteBytes(0x4100_0000UL, Encoding.ASCII.GetBytes("Linux version 6.1\0"));
        tables.WriteBytes(0x4200_0000UL, Encoding.ASCII.GetBytes("user page"));
        var cpus = new List<Arm64CpuState>();
        for (int i = 0; i < 2; i++)
        {
            var c = new Arm64CpuState { Index = i, Pc = KernelVa + (ulong)i * 4, Sp = 0xffff_8000_0a00_0000UL + (ulong)i, Pstate = 0x3C5, HasFpSimd = true, Fpsr = 0x10, Fpcr = 0x0040_0000 };
            for (int x = 0; x <= 30; x++)
            {
                c.X[x] = (0x100UL * (ulong)(i + 1)) + (ulong)x;
            }

            c.V[0] = (byte)(0xA0 + i);
            c.SpEl[0] = 0xffff_0000_0200_0000UL + (ulong)i;
            c.SetSystemRegister(Arm64SystemRegisters.TcrEl1.KvmId, tables.Tcr);
            c.SetSystemRegister(Arm64SystemRegisters.Ttbr0El1.KvmId, tables.Ttbr0);
            c.SetSystemRegister(Arm64SystemRegisters.Ttbr1El1.KvmId, tables.Ttbr1);
            c.SetSystemRegister(Arm64SystemRegisters.SctlrEl1.KvmId, 1);
            cpus.Add(c);
        }

        var origin = new MachineOrigin(MachineOriginKind.ElfCore, "synthetic-arm64.elf", "ELF core");
        return (new MachineState(origin, "virt-7.2", tables, [], [], [], [], null) { Arm64Cpus = cpus }, tables);
    }

    private static string Reply(GdbCommandDispatcher d, string packet) => d.Handle(packet, CancellationToken.None).Reply;

    private static string Le(ulong v, int bytes)
    {
        byte[] b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        return Convert.ToHexStringLower(b, 0, bytes);
    }

    [Fact]
    public void Registers_follow_gdbs_aarch64_numbering_and_the_description_names_them()
    {
        (MachineState m, _) = Machine();
        using (m)
        {
            var target = new GdbTarget(m, TextWriter.Null, null);
            var d = new GdbCommandDispatcher(target, TextWriter.Null);

            // x0–x30 0–30, sp 31, pc 32, cpsr 33 (32 bits), v0–v31 34–65 (128 bits), fpsr 66, fpcr 67, then ours.
            Assert.Equal(["x0", "x30", "sp", "pc", "cpsr", "v0", "v31", "fpsr", "fpcr"], new[] { 0, 30, 31, 32, 33, 34, 65, 66, 67 }.Select(i => target.Registers[i].Name));
            Assert.Equal([64, 64, 32, 128, 32], new[] { 0, 32, 33, 34, 67 }.Select(i => target.Registers[i].Bits));
            Assert.Equal(Le(0x100, 8), Reply(d, "p0"));
            Assert.Equal(Le(KernelVa, 8), Reply(d, "p20"));
            Assert.Equal(Le(0x3C5, 4), Reply(d, "p21"));
            Assert.Equal("a0" + new string('0', 30), Reply(d, "p22"));
            Assert.Equal(Le(0x10, 4), Reply(d, "p42"));
            int ttbr1 = target.Registers.ToList().FindIndex(r => r.Name == "TTBR1_EL1");
            int spEl0 = target.Registers.ToList().FindIndex(r => r.Name == "SP_EL0");
            Assert.True(ttbr1 > 67 && spEl0 > ttbr1);
            Assert.Equal(Le(m.Arm64Cpus[0].Ttbr1El1, 8), Reply(d, $"p{ttbr1:x}"));
            Assert.Equal(Le(0xffff_0000_0200_0000UL, 8), Reply(d, $"p{spEl0:x}"));
            Assert.Equal("E45", Reply(d, $"p{target.Registers.Count:x}"));
            Assert.Equal(target.RegisterBlockSize * 2, Reply(d, "g").Length);

            string xml = target.TargetXml;
            Assert.Contains("<architecture>aarch64</architecture>", xml, StringComparison.Ordinal);
            Assert.Contains("<feature name=\"org.gnu.gdb.aarch64.core\"><reg name=\"x0\" bitsize=\"64\"", xml, StringComparison.Ordinal);
            Assert.Contains("<reg name=\"v31\" bitsize=\"128\" type=\"aarch64v\" regnum=\"65\"/>", xml, StringComparison.Ordinal);
            Assert.Contains("<reg name=\"TTBR1_EL1\"", xml, StringComparison.Ordinal);
            Assert.DoesNotContain("TPIDR_EL1", xml, StringComparison.Ordinal); // not carried by these vCPUs

            // The second vCPU is thread 2.
            Assert.Equal("OK", Reply(d, "Hg2"));
            Assert.Equal(Le(0x200, 8), Reply(d, "p0"));
            Assert.Equal("T05thread:2;", Reply(d, "?"));
            Assert.Contains("vCPU 1, EL1h", target.DescribeThread(1), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Memory_is_read_through_ttbr1_for_kernel_and_ttbr0_for_user_addresses()
    {
        (MachineState m, _) = Machine();
        using (m)
        {
            var target = new GdbTarget(m, TextWriter.Null, null);
            var d = new GdbCommandDispatcher(target, TextWriter.Null);
            Assert.Equal(Convert.ToHexStringLower(Encoding.ASCII.GetBytes("Linux version")), Reply(d, $"m{KernelVa:x},d"));
            Assert.Equal(Convert.ToHexStringLower(Encoding.ASCII.GetBytes("user page")), Reply(d, $"m{UserVa:x},9"));
            Assert.Equal("E14", Reply(d, $"m{KernelVa + 0x1000:x},4"));

            // Physical mode reads the same bytes at the physical address.
            target.PhysicalMode = true;
            Assert.Equal(Convert.ToHexStringLower(Encoding.ASCII.GetBytes("Linux")), Reply(d, "m41000000,5"));
        }
    }

    [Fact]
    public void A_read_only_input_refuses_register_and_memory_writes()
    {
        (MachineState m, _) = Machine();
        using (m)
        {
            var target = new GdbTarget(m, TextWriter.Null, null);
            Assert.Throws<InvalidOperationException>(() => target.WriteRegister(0, new byte[8]));
            Assert.Throws<InvalidOperationException>(() => target.WriteMemory(KernelVa, [1]));
            Assert.Equal(Le(0x100, 8), Convert.ToHexStringLower(target.ReadRegister(0)));
        }
    }
}
