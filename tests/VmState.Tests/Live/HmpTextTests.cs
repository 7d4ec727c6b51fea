using VmState.Arch.X86;
using VmState.Live;

namespace VmState.Tests.Live;

/// <summary>HMP text as QEMU 7.2 prints it (captured from the fixture guest).</summary>
public class HmpTextTests
{
    private const string Mtree = """
        FlatView #1
         AS "I/O", root: io
         Root memory region: io
          0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
        FlatView #3
         AS "memory", root: system
         Root memory region: system
          0000000000000000-000000000009ffff (prio 0, ram): pc.ram
          00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
          00000000000c0000-00000000000cbfff (prio 0, rom): pc.ram @00000000000c0000
          0000000000100000-000000001fffffff (prio 0, ram): pc.ram @0000000000100000 KVM
          00000000fd000000-00000000fdffffff (prio 1, ram): vga.vram
          00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
        """;

    private const string Registers = """
        CPU#0
        RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000001 RDX=000000000000336c
        RSI=0000000000000083 RDI=0000000000003ec4 RBP=ffffffff9621aa40 RSP=ffffffff96203e98
        R8 =0000000000000001 R9 =0000000000000007 R10=0000000000000001 R11=0000000000000000
        R12=0000000000000000 R13=0000000000000000 R14=0000000000000000 R15=0000000000000000
        RIP=ffffffff952592eb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
        ES =0000 0000000000000000 00000000 00000000
        CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]
        SS =0018 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]
        DS =0000 0000000000000000 00000000 00000000
        FS =0000 0000000000000000 00000000 00000000
        GS =0000 ffff8eb2df400000 00000000 00000000
        LDT=0000 0000000000000000 00000000 00008200 DPL=0 LDT
        TR =0040 fffffe0000003000 00004087 00008900 DPL=0 TSS64-avl
        GDT=     fffffe0000001000 0000007f
        IDT=     fffffe0000000000 00000fff
        CR0=80050033 CR2=00007fffc6aff080 CR3=00000000022e0000 CR4=000006f0
        EFER=0000000000000d01
        CPU#1
        RAX=0000000000000005 RBX=0000000000000001 RCX=0000000000000001 RDX=0000000000005a84
        RIP=ffffffff952592eb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
        CR0=80050033 CR2=000000000042ee70 CR3=0000000006a10000 CR4=000006e0
        """;

    [Fact]
    public void FlatViewRamSkipsIoAndKeepsOffsets()
    {
        IReadOnlyList<HmpText.RamRegion> ram = HmpText.ParseFlatViewRam(Mtree);
        Assert.Equal(5, ram.Count);
        Assert.Equal(new HmpText.RamRegion(0x100000, 0x1ff00000, "pc.ram", 0x100000, false), ram[2]);
        Assert.True(ram[1].ReadOnly);
        Assert.Equal("pc.bios", ram[4].Name);
    }

    [Fact]
    public void RegistersIncludingR8ToR15SegmentsAndTables()
    {
        IReadOnlyList<X86CpuState> cpus = HmpText.ParseRegisters(Registers);
        Assert.Equal(2, cpus.Count);
        X86CpuState c = cpus[0];
        Assert.Equal(1UL, c.Regs[8]);
        Assert.Equal(7UL, c.Regs[9]);
        Assert.Equal(0x336cUL, c.Regs[2]);
        Assert.Equal(0xffffffff96203e98UL, c.Regs[4]);
        Assert.Equal(0xffffffff952592ebUL, c.Rip);
        Assert.Equal(0x22e0000UL, c.Cr3);
        Assert.Equal(0xd01UL, c.Efer);
        Assert.Equal(0x10u, c.Segments[X86CpuState.Cs].Selector);
        Assert.Equal(0xffff8eb2df400000UL, c.Segments[X86CpuState.Gs].Base);
        Assert.Equal(0xfffffe0000003000UL, c.Tr.Base);
        Assert.Equal(0xfffffe0000000000UL, c.Idt.Base);
        Assert.Equal(0xfffu, c.Idt.Limit);
        Assert.Equal(0x6a10000UL, cpus[1].Cr3);
        Assert.Equal(5UL, cpus[1].Regs[0]);
    }

    [Fact]
    public void Gpa2HvaAnswersAreParsed()
    {
        Assert.Equal(0x7f633ff00000UL, HmpText.ParseGpa2Hva("Host virtual address for 0x100000 (pc.ram) is 0x7f633ff00000\r\n"));
        Assert.Null(HmpText.ParseGpa2Hva("Memory at address 0xa0000 is not RAM\r\n"));
    }

    [Fact]
    public void MainRamOfNumaNodesIsTheContainerSubregionsInOffsetOrder()
    {
        // QEMU 7.2 "info mtree" of -numa node,memdev=ram-node0 -numa node,memdev=ram-node1 (a pc-dimm too).
        const string Mtree = """
            address-space: memory
              0000000000000000-ffffffffffffffff (prio 0, i/o): system
                0000000000000000-000000001fffffff (prio 0, i/o): alias ram-below-4g @pc.ram 0000000000000000-000000001fffffff
                00000000000ca000-00000000000ccfff (prio 1000, ram): alias kvmvapic-rom @ram-node0 00000000000ca000-00000000000ccfff
                0000000100000000-0000000107ffffff (prio 0, ram): dimm0

            memory-region: pc.ram
              0000000000000000-000000001fffffff (prio 0, i/o): pc.ram
                0000000010000000-000000001fffffff (prio 0, ram): ram-node1
                0000000000000000-000000000fffffff (prio 0, ram): ram-node0

            memory-region: pc.bios
              00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios

            """;
        Assert.Equal(["ram-node0", "ram-node1"], HmpText.ParseMainRam(Mtree));
    }

    [Fact]
    public void MainRamOfOneBackendIsThatRegion()
    {
        const string Mtree = """
            address-space: memory
              0000000000000000-ffffffffffffffff (prio 0, i/o): system
                0000000000000000-000000001fffffff (prio 0, ram): alias ram-below-4g @m0 0000000000000000-000000001fffffff

            memory-region: m0
              0000000000000000-000000001fffffff (prio 0, ram): m0

            """;
        Assert.Equal(["m0"], HmpText.ParseMainRam(Mtree));
        Assert.Throws<FormatException>(() => HmpText.ParseMainRam("address-space: memory\n"));
    }
}
