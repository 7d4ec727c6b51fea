using System.Buffers.Binary;
using VmState.Arch.Arm64;
using VmState.IO;
using VmState.Linux;
using VmState.Machine;
using VmState.Tests.Arm64;

namespace VmState.Tests.Linux;

/// <summary>
/// The AArch64 kernel location kept between runs in a machine's notes (the index cache): it round-trips, every
/// truncation and every offset, size or count out of bounds is a format error, and a note that does not decode or
/// does not describe the machine is not used (the locator then searches).
/// </summary>
public sealed class Arm64KernelLocationNoteTests
{
    // The arm64 lines of a real Debian 6.1.0-57-arm64 VMCOREINFO (as in Arm64KernelLayoutTests).
    private const string RealText = "OSRELEASE=6.1.0-57-arm64\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffc3474b51c030\nOFFSET(uts_namespace.name)=0\n"
        + "SYMBOL(swapper_pg_dir)=ffffc3474ac58000\nSYMBOL(_stext)=ffffc34749610000\nNUMBER(VA_BITS)=48\n"
        + "NUMBER(kimage_voffset)=0xffffc34709400000\nNUMBER(PHYS_OFFSET)=0x40000000\nNUMBER(TCR_EL1_T1SZ)=0x10\n"
        + "KERNELOFFSET=434741600000\nNUMBER(KERNELPACMASK)=0xffff000000000000\n";

    private static readonly Arm64KernelLocationNote Good = new(
        RealText, "the vmcoreinfo device", 0x1234560, "Linux version 6.1.0-57-arm64 (debian-kernel@lists.debian.org) #1 SMP Debian 6.1.0-57 (2026-01-01)",
        0x1700000, 4_800_000, 0xffffc3474b3e2f10UL, ["AArch64 layout from VMCOREINFO: …", "BTF: .BTF header in the image at 0x…", "ünïcode"]);

    private static void AssertSame(Arm64KernelLocationNote want, Arm64KernelLocationNote got)
    {
        Assert.Equal(
            (want.VmcoreinfoText, want.VmcoreinfoSource, want.BannerOffset, want.Banner, want.BtfOffset, want.BtfSize, want.Modules),
            (got.VmcoreinfoText, got.VmcoreinfoSource, got.BannerOffset, got.Banner, got.BtfOffset, got.BtfSize, got.Modules));
        Assert.Equal(want.Evidence, got.Evidence);
    }

    [Fact]
    public void A_note_round_trips_and_every_truncation_is_a_format_error()
    {
        byte[] bytes = Good.Encode()!;
        AssertSame(Good, Arm64KernelLocationNote.Decode(bytes));
        AssertSame(Good with { VmcoreinfoSource = null, BtfOffset = 0, BtfSize = 0, Modules = 0, Evidence = [] }, Arm64KernelLocationNote.Decode((Good with { VmcoreinfoSource = null, BtfOffset = 0, BtfSize = 0, Modules = 0, Evidence = [] }).Encode()!));
        for (int n = 0; n < bytes.Length; n++)
        {
            Assert.Throws<VmStateFormatException>(() => Arm64KernelLocationNote.Decode(bytes.AsSpan(0, n)));
        }

        Assert.Contains("after the last evidence line", Assert.Throws<VmStateFormatException>(() => Arm64KernelLocationNote.Decode([.. bytes, 0])).Message, StringComparison.Ordinal);
        byte[] version = (byte[])bytes.Clone();
        version[0] = 2;
        Assert.Contains("version 2", Assert.Throws<VmStateFormatException>(() => Arm64KernelLocationNote.Decode(version)).Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, string> OutOfBounds() => new()
    {
        { "banner", "banner offset" },
        { "btf-offset", "BTF offset" },
        { "btf-size", "BTF size" },
        { "btf-end", "not within the 128 MiB" },
        { "btf-empty", "not within the 128 MiB" },
        { "banner-text", "does not start with \"Linux version \"" },
    };

    [Theory]
    [MemberData(nameof(OutOfBounds))]
    public void Offsets_and_sizes_beyond_an_image_are_format_errors(string which, string message)
    {
        Arm64KernelLocationNote bad = which switch
        {
            "banner" => Good with { BannerOffset = Arm64KernelLocationNote.MaxOffset },
            "btf-offset" => Good with { BtfOffset = uint.MaxValue },
            "btf-size" => Good with { BtfOffset = 0, BtfSize = uint.MaxValue },
            "btf-end" => Good with { BtfOffset = Arm64KernelLocationNote.MaxOffset - 16, BtfSize = 32 },
            "btf-empty" => Good with { BtfSize = 0 },
            _ => Good with { Banner = "not a banner" },
        };
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => Arm64KernelLocationNote.Decode(bad.Encode()!));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_string_or_evidence_count_longer_than_the_bytes_is_a_format_error()
    {
        byte[] bytes = Good.Encode()!;

        // The VMCOREINFO text's length (right after the version) claims more than follows.
        byte[] longString = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(longString.AsSpan(1), 0x7FFF_FFFF);
        Assert.Contains("a string of", Assert.Throws<VmStateFormatException>(() => Arm64KernelLocationNote.Decode(longString)).Message, StringComparison.Ordinal);

        // The evidence count: 0xFFFF lines is more than a note keeps.
        byte[] none = (Good with { Evidence = [] }).Encode()!;
        BinaryPrimitives.WriteUInt16LittleEndian(none.AsSpan(none.Length - 2), 0xFFFF);
        Assert.Contains("evidence lines, more than", Assert.Throws<VmStateFormatException>(() => Arm64KernelLocationNote.Decode(none)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_note_kind_is_per_architecture()
    {
        var x86 = new MachineState(new MachineOrigin(MachineOriginKind.ElfCore, "x.elf", "ELF core"), "pc", new Arm64TableBuilder(48), [], [], [], [], null);
        Assert.Equal("kernel-location-vcb", IKernelLocationNotes.For(x86).Kind(KernelLocatorOptions.Default));
        MachineState arm = Machine();
        Assert.Equal("kernel-location-arm64", IKernelLocationNotes.For(arm).Kind(KernelLocatorOptions.Default));
        Assert.Null(IKernelLocationNotes.For(arm).Kind(new KernelLocatorOptions { UseVmcoreinfo = false }));
    }

    [Fact]
    public void A_note_that_does_not_decode_or_does_not_describe_the_machine_is_not_used()
    {
        MachineState m = Machine();
        IKernelLocationNotes notes = IKernelLocationNotes.For(m);
        Assert.Null(notes.FromNote(m, []));
        Assert.Null(notes.FromNote(m, [1, 2, 3]));
        Assert.Null(notes.FromNote(m, Good.Encode().AsSpan(0, 40)));

        // VMCOREINFO without the arm64 values, and one whose image is not in this machine's RAM.
        Assert.Null(notes.FromNote(m, (Good with { VmcoreinfoText = "OSRELEASE=6.1.0-57-amd64\nPAGESIZE=4096\n" }).Encode()));
        Assert.Null(notes.FromNote(m, Good.Encode()));
    }

    /// <summary>An AArch64 machine with a page or two of RAM and a vCPU at EL1 whose TCR_EL1 is known.</summary>
    private static MachineState Machine()
    {
        var tables = new Arm64TableBuilder(48);
        tables.Map(0xffff_8000_0810_0000UL, 0x4100_0000UL, 0x1000);
        var c = new Arm64CpuState { Index = 0, Pstate = 0x3C5 };
        c.SetSystemRegister(Arm64SystemRegisters.TcrEl1.KvmId, tables.Tcr);
        c.SetSystemRegister(Arm64SystemRegisters.Ttbr1El1.KvmId, tables.Ttbr1);
        var origin = new MachineOrigin(MachineOriginKind.ElfCore, "synthetic-arm64.elf", "ELF core");
        return new MachineState(origin, "virt-7.2", tables, [], [], [], [], null) { Arm64Cpus = [c] };
    }
}
