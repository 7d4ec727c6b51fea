using VmState.Arch.Arm64;
using VmState.Linux;

namespace VmState.Tests.Arm64;

public class Arm64KernelLayoutTests
{
    // The arm64 lines of a real Debian 6.1.0-57-arm64 VMCOREINFO (QEMU -M virt -cpu max, KASLR on).
    private const string RealText = "OSRELEASE=6.1.0-57-arm64\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffc3474b51c030\nOFFSET(uts_namespace.name)=0\n"
        + "SYMBOL(swapper_pg_dir)=ffffc3474ac58000\nSYMBOL(_stext)=ffffc34749610000\nNUMBER(VA_BITS)=48\n"
        + "NUMBER(kimage_voffset)=0xffffc34709400000\nNUMBER(PHYS_OFFSET)=0x40000000\nNUMBER(TCR_EL1_T1SZ)=0x10\n"
        + "KERNELOFFSET=434741600000\nNUMBER(KERNELPACMASK)=0xffff000000000000\n";

    [Fact]
    public void Parses_the_arm64_numbers()
    {
        Arm64KernelLayout l = Arm64KernelLayout.FromVmcoreinfo(Vmcoreinfo.Parse(RealText)) ?? throw new InvalidOperationException();
        Assert.Equal(48, l.VaBits);
        Assert.Equal(0xffffc34709400000UL, l.KimageVoffset);
        Assert.Equal(0x40000000UL, l.PhysOffset);
        Assert.Equal(0x41858000UL, l.SwapperPgDirPhysical);
        Assert.Equal(0xffff000000000000UL, l.PageOffset);
        Assert.Equal(0x40210000UL, l.ImageToPhysical(0xffffc34749610000UL));
        Assert.Equal(0x40001000UL, l.LinearToPhysical(0xffff000000001000UL));
        Assert.Equal(0xffffc3474a2da284UL, l.StripPac(0x4083c3474a2da284UL));
        Assert.Equal(0xffffc3474b51c030UL, l.InitUtsNs);
    }

    [Fact]
    public void An_x86_vmcoreinfo_is_not_an_arm64_layout() =>
        Assert.Null(Arm64KernelLayout.FromVmcoreinfo(Vmcoreinfo.Parse("OSRELEASE=6.1.0-57-amd64\nSYMBOL(init_top_pgt)=ffffffff8280a000\nNUMBER(phys_base)=0\n")));

    [Fact]
    public void Reads_the_release_through_swapper_pg_dir()
    {
        var t = new Arm64TableBuilder(48);
        Arm64KernelLayout l = new(48, 0xffff_8000_0000_0000UL - 0x4000_0000UL, 0x4000_0000UL, t.Ttbr1 & ~1UL, null, null, 0xffff_8000_0010_0000UL);
        // The layout's swapper_pg_dir is an image address whose physical address is the builder's TTBR1 table.
        l = l with { SwapperPgDir = (t.Ttbr1 & ~1UL) + l.KimageVoffset };
        t.Map(0xffff_8000_0010_0000UL, 0x7000_0000UL, 0x1000);
        t.WriteBytes(0x7000_0000UL + 130, "6.1.0-57-arm64\0"u8);
        var space = new Arm64AddressSpace(t, t.Tcr, t.Ttbr0, l.SwapperPgDirPhysical);
        Assert.Equal("6.1.0-57-arm64", l.ReadRelease(space, Vmcoreinfo.Parse("OFFSET(uts_namespace.name)=0\n")));
    }
}
