using System.Buffers.Binary;
using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.Formats;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests.Formats;

public sealed class ElfCoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-elf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static X86CpuState Cpu(int index)
    {
        var c = new X86CpuState { Index = index, Rip = 0xffffffff81000000 + (ulong)index, Rflags = 0x246, Cr0 = 0x80050033, Cr3 = 0x1000 * (ulong)(index + 1), Cr4 = 0x3006f0, KernelGsBase = 0xffff888000001000 };
        for (int i = 0; i < 16; i++)
        {
            c.Regs[i] = (ulong)((index * 100) + i);
        }

        for (int i = 0; i < 6; i++)
        {
            c.Segments[i] = new X86Segment((uint)(8 * i), (ulong)i << 20, 0xfffff, 0xa09b00);
        }

        c.Gdt = new X86Segment(0, 0xfffffe0000001000, 0x7f, 0);
        c.Idt = new X86Segment(0, 0xfffffe0000000000, 0xfff, 0);
        return c;
    }

    private static byte Content(ulong a) => (byte)((a >> 12) ^ a);

    [Fact]
    public void WrittenCoreReadsBackWithSameMemoryAndRegisters()
    {
        MemoryRange[] ranges = [new(0, 0xA0000, "low"), new(0xC0000, 0x40000, "ram"), new(0x1_0000_0000, 0x3000, "high")];
        var machine = new MachineState(new MachineOrigin(MachineOriginKind.RawImage, "synthetic", "test"), "pc-i440fx-7.2", new SyntheticMemory(ranges, Content), [Cpu(0), Cpu(1)], [], [], [], null);
        string path = Path.Combine(_dir, "core.elf");
        byte[] note = VmcoreinfoNote("OSRELEASE=6.1.0-test\nPAGESIZE=4096\n");
        ElfCoreSummary summary = ElfCoreWriter.Write(machine, path, note);
        Assert.Equal(3, summary.LoadSegments);

        using MachineState back = SnapshotLoader.Open(path);
        Assert.Equal(ranges, back.Memory.Ranges.Select(r => r with { Name = r.Name.StartsWith("PT_LOAD", StringComparison.Ordinal) ? ranges.First(x => x.Start == r.Start).Name : r.Name }));
        foreach (MemoryRange r in ranges)
        {
            byte[] got = new byte[r.Length];
            back.Memory.ReadExactly(r.Start, got);
            for (int i = 0; i < got.Length; i += 997)
            {
                Assert.Equal(Content(r.Start + (ulong)i), got[i]);
            }
        }

        Assert.Equal(2, back.Cpus.Count);
        for (int i = 0; i < 2; i++)
        {
            X86CpuState want = Cpu(i);
            X86CpuState got = back.Cpus[i];
            Assert.Equal(want.Regs, got.Regs);
            Assert.Equal(want.Rip, got.Rip);
            Assert.Equal(want.Cr3, got.Cr3);
            Assert.Equal(want.Cr4, got.Cr4);
            Assert.Equal(want.Gdt.Base, got.Gdt.Base);
            Assert.Equal(want.KernelGsBase, got.KernelGsBase);
            Assert.Equal(want.Segments, got.Segments);
        }

        Assert.Equal(note, back.Origin.CarriedVmcoreinfoNote);
        Assert.Contains("OSRELEASE=6.1.0-test", VmcoreinfoLocator.Text(back.Origin.CarriedVmcoreinfoNote!));
    }

    [Fact]
    public void VirtualAliasesPointAtThePhysicalBytesAndDoNotChangePhysicalMemory()
    {
        MemoryRange[] ranges = [new(0, 0xA0000, "low"), new(0xC0000, 0x40000, "ram")];
        var machine = new MachineState(new MachineOrigin(MachineOriginKind.RawImage, "synthetic", "test"), null, new SyntheticMemory(ranges, Content), [Cpu(0)], [], [], [], null);
        string path = Path.Combine(_dir, "alias.elf");
        VirtualMapping[] aliases =
        [
            new(0xffffffff81000000, 0xC1000, 0x2000, false, false, false),
            new(0xffff888000000000, 0x9F000, 0x3000, true, false, true), // crosses the hole at 0xA0000: only 0x1000 is backed
        ];
        ElfCoreSummary summary = ElfCoreWriter.Write(machine, path, null, aliases);
        Assert.Equal(2, summary.VirtualSegments);
        byte[] file = File.ReadAllBytes(path);
        long phoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(32));
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(56));
        Assert.Equal(1 + 2 + 2, phnum);
        var loads = Enumerable.Range(0, phnum).Select(i => file.AsSpan((int)phoff + (i * 56), 56).ToArray())
            .Where(p => BinaryPrimitives.ReadUInt32LittleEndian(p) == 1)
            .Select(p => (Off: BinaryPrimitives.ReadUInt64LittleEndian(p.AsSpan(8)), V: BinaryPrimitives.ReadUInt64LittleEndian(p.AsSpan(16)), P: BinaryPrimitives.ReadUInt64LittleEndian(p.AsSpan(24)), Size: BinaryPrimitives.ReadUInt64LittleEndian(p.AsSpan(32))))
            .ToList();
        // After the physical PT_LOAD, in ascending p_vaddr, each with p_paddr = p_vaddr (above any physical address,
        // so readers by p_paddr such as Volatility 3 see RAM alone, sorted and disjoint).
        Assert.Equal([0UL, 0xC0000, 0xffff888000000000, 0xffffffff81000000], loads.Select(l => l.V));
        var text = loads.Single(l => l.V == 0xffffffff81000000);
        Assert.Equal(text.V, text.P);
        Assert.Equal(0xffff888000000000UL, loads.Single(l => l.V == 0xffff888000000000).P);
        Assert.Equal(Content(0xC1000 + 5), file[(int)text.Off + 5]);
        var direct = loads.Single(l => l.V == 0xffff888000000000);
        Assert.Equal(0x1000UL, direct.Size);

        using MachineState back = SnapshotLoader.Open(path);
        Assert.Equal(ranges.Select(r => (r.Start, r.Length)), back.Memory.Ranges.Select(r => (r.Start, r.Length)));
    }

    [Fact]
    public void PrstatusCarriesRegistersInUserRegsOrder()
    {
        X86CpuState cpu = Cpu(1);
        ElfNote n = X86CoreNotes.Prstatus(cpu);
        Assert.Equal(336, n.Descriptor.Length);
        Assert.Equal(2, BinaryPrimitives.ReadInt32LittleEndian(n.Descriptor.AsSpan(32)));
        ulong Reg(int q) => BinaryPrimitives.ReadUInt64LittleEndian(n.Descriptor.AsSpan(112 + (q * 8)));
        Assert.Equal(cpu.Regs[15], Reg(0)); // r15
        Assert.Equal(cpu.Regs[0], Reg(10)); // rax
        Assert.Equal(cpu.Rip, Reg(16));
        Assert.Equal(cpu.Regs[4], Reg(19)); // rsp
        Assert.Equal(cpu.Segments[X86CpuState.Gs].Base, Reg(22));

        var back = new X86CpuState();
        X86CoreNotes.ReadPrstatus(n.Descriptor, back);
        Assert.Equal(cpu.Regs, back.Regs);
        Assert.Equal(1, back.Index);
    }

    [Fact]
    public void MoreThan65535SegmentsUsePnXnum()
    {
        var ranges = new MemoryRange[70_000];
        for (int i = 0; i < ranges.Length; i++)
        {
            ranges[i] = new MemoryRange((ulong)i * 0x2000, 0x1000, "p");
        }

        var machine = new MachineState(new MachineOrigin(MachineOriginKind.RawImage, "synthetic", "test"), null, new SyntheticMemory(ranges, a => a % 0x2000 == 8 ? (byte)(a >> 13) : (byte)0), [Cpu(0)], [], [], [], null);
        string path = Path.Combine(_dir, "many.elf");
        ElfCoreWriter.Write(machine, path, null);
        byte[] header = new byte[64 + 64];
        using (var f = File.OpenRead(path))
        {
            f.ReadExactly(header);
        }

        Assert.Equal(0xFFFF, BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(56)));
        Assert.Equal(70_001u, BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(64 + 44)));
        using MachineState back = SnapshotLoader.Open(path);
        Assert.Equal(70_000, back.Memory.Ranges.Count);
        byte[] b = new byte[1];
        back.Memory.ReadExactly((69_999UL * 0x2000) + 8, b);
        Assert.Equal(unchecked((byte)69_999), b[0]);
    }

    [Fact]
    public void OutputIsNotLeftHalfWrittenOnFailure()
    {
        var broken = new MachineState(new MachineOrigin(MachineOriginKind.RawImage, "synthetic", "test"), null, new BrokenMemory(), [Cpu(0)], [], [], [], null);
        string path = Path.Combine(_dir, "broken.elf");
        Assert.ThrowsAny<Exception>(() => ElfCoreWriter.Write(broken, path, null));
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Theory]
    [InlineData(0, "magic")]
    [InlineData(4, "EI_CLASS")]
    [InlineData(16, "e_type")]
    [InlineData(18, "e_machine")]
    [InlineData(54, "e_phentsize")]
    public void CorruptHeadersNameTheField(int offset, string field)
    {
        MemoryRange[] ranges = [new(0, 0x1000, "r")];
        var machine = new MachineState(new MachineOrigin(MachineOriginKind.RawImage, "s", "t"), null, new SyntheticMemory(ranges, Content), [Cpu(0)], [], [], [], null);
        string path = Path.Combine(_dir, "c.elf");
        ElfCoreWriter.Write(machine, path, null);
        byte[] data = File.ReadAllBytes(path);
        data[offset] ^= 0x5A;
        var e = Assert.Throws<VmStateFormatException>(() => ElfCoreReader.Read(new MemorySource(data), "c"));
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void SegmentPastEndOfFileIsRejected()
    {
        MemoryRange[] ranges = [new(0, 0x10000, "r")];
        var machine = new MachineState(new MachineOrigin(MachineOriginKind.RawImage, "s", "t"), null, new SyntheticMemory(ranges, Content), [Cpu(0)], [], [], [], null);
        string path = Path.Combine(_dir, "t.elf");
        ElfCoreWriter.Write(machine, path, null);
        byte[] data = File.ReadAllBytes(path)[..0x2000];
        var e = Assert.Throws<VmStateFormatException>(() => ElfCoreReader.Read(new MemorySource(data), "t"));
        Assert.Contains("past the end of the file", e.Message);
    }

    /// <summary>A written core of 64 KiB at guest-physical 0 (program header 0 is PT_NOTE, 1 is the PT_LOAD).</summary>
    private byte[] SmallCore()
    {
        MemoryRange[] ranges = [new(0, 0x10000, "r")];
        var machine = new MachineState(new MachineOrigin(MachineOriginKind.RawImage, "s", "t"), null, new SyntheticMemory(ranges, Content), [Cpu(0)], [], [], [], null);
        string path = Path.Combine(_dir, "small.elf");
        ElfCoreWriter.Write(machine, path, null);
        return File.ReadAllBytes(path);
    }

    private static int Phdr(byte[] core, int index) => (int)BinaryPrimitives.ReadUInt64LittleEndian(core.AsSpan(32)) + (index * 56);

    [Theory]
    [InlineData(0x7fff_ffff_ffff_fff0UL)] // + phnum * 56 wraps to a negative long: slipped past the old check
    [InlineData(0xffff_ffff_ffff_ff00UL)]
    [InlineData(0x8000_0000_0000_0000UL)]
    public void ProgramHeadersOutsideTheFileAreAnErrorNotAnEmptyCore(ulong phoff)
    {
        byte[] core = SmallCore();
        BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan(32), phoff);
        var e = Assert.Throws<VmStateFormatException>(() => ElfCoreReader.Read(new MemorySource(core), "t"));
        Assert.Equal(32, e.Offset);
        Assert.Contains("do not fit in the file", e.Message);
    }

    [Theory]
    [InlineData(8, 0xffff_ffff_ffff_f000UL, "runs past the end of the file")] // p_offset
    [InlineData(32, 0xffff_ffff_ffff_ffffUL, "runs past the end of the file")] // p_filesz (and p_memsz below)
    [InlineData(24, 0xffff_ffff_ffff_f000UL, "wraps the 64-bit address space")] // p_paddr + 64 KiB
    public void SegmentFieldsNearTwoToTheSixtyFourAreRejectedWithoutOverflow(int field, ulong value, string expected)
    {
        byte[] core = SmallCore();
        int ph = Phdr(core, 1);
        BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan(ph + field), value);
        if (field == 32)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan(ph + 40), value);
        }

        var e = Assert.Throws<VmStateFormatException>(() => ElfCoreReader.Read(new MemorySource(core), "t"));
        Assert.Equal(ph, e.Offset);
        Assert.Contains("program header 1", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MemszBeyondTheFileIsNotPresentedAsATebibyteOfZeroes()
    {
        // Before: a 1 TiB range of zeroes (extract wrote a 1 TiB file; RAM scans ran for minutes).
        byte[] core = SmallCore();
        BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan(Phdr(core, 1) + 40), 1UL << 40);
        using MachineState m = ElfCoreReader.Read(new MemorySource(core), "t");
        MemoryRange r = Assert.Single(m.Memory.Ranges);
        Assert.Equal(0x10000UL, r.Length);
        Assert.Contains(m.Warnings, w => w.Contains("left unmapped", StringComparison.Ordinal));
        byte[] b = new byte[1];
        m.Memory.ReadExactly(0x1234, b);
        Assert.Equal(Content(0x1234), b[0]);
    }

    [Fact]
    public void MappedMemoryIsCappedByReaderLimits()
    {
        byte[] core = SmallCore();
        using (MachineState ok = ElfCoreReader.Read(new MemorySource(core), "t", new ReaderLimits { MaxGuestRam = 0x10000 }))
        {
            Assert.Equal(0x10000UL, ok.Memory.Ranges[0].Length);
        }

        var e = Assert.Throws<VmStateFormatException>(() => ElfCoreReader.Read(new MemorySource(core), "t", new ReaderLimits { MaxGuestRam = 0xffff }));
        Assert.Contains("MaxGuestRam", e.Message);
    }

    [Fact]
    public void ACoreWithoutPtLoadIsAnError()
    {
        byte[] core = SmallCore();
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(core.AsSpan(56));
        for (int i = 0; i < phnum; i++)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(core.AsSpan(Phdr(core, i))) == ElfConstants.PtLoad)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(core.AsSpan(Phdr(core, i)), 0);
            }
        }

        var e = Assert.Throws<VmStateFormatException>(() => ElfCoreReader.Read(new MemorySource(core), "t"));
        Assert.Contains("is a PT_LOAD", e.Message);

        BinaryPrimitives.WriteUInt16LittleEndian(core.AsSpan(56), 0);
        e = Assert.Throws<VmStateFormatException>(() => ElfCoreReader.Read(new MemorySource(core), "t"));
        Assert.Contains("e_phnum 0", e.Message);
    }

    [Fact]
    public void ManyPtNoteHeadersOverTheSameBytesAreCappedInTotal()
    {
        // 100 program headers naming the same 1 MiB note: each alone is under the 64 MiB limit, their sum is not
        // (before: no total, so 65,535 such headers copied 64 GiB).
        byte[] core = SmallCore();
        var big = new ElfNote("X", 7, new byte[1 << 20]);
        const int Count = 100;
        byte[] hostile = new byte[core.Length + big.EncodedSize + (Count * 56)];
        core.CopyTo(hostile, 0);
        big.Encode(hostile.AsSpan(core.Length));
        int phoff = core.Length + big.EncodedSize;
        BinaryPrimitives.WriteUInt64LittleEndian(hostile.AsSpan(32), (ulong)phoff);
        BinaryPrimitives.WriteUInt16LittleEndian(hostile.AsSpan(56), Count);
        for (int i = 0; i < Count; i++)
        {
            Span<byte> p = hostile.AsSpan(phoff + (i * 56), 56);
            BinaryPrimitives.WriteUInt32LittleEndian(p, ElfConstants.PtNote);
            BinaryPrimitives.WriteUInt64LittleEndian(p[8..], (ulong)core.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(p[32..], (ulong)big.EncodedSize);
        }

        var e = Assert.Throws<VmStateFormatException>(() => ElfCoreReader.Read(new MemorySource(hostile), "t"));
        Assert.Contains("PT_NOTE segments of", e.Message);
        Assert.Contains($"limit {ElfCoreReader.MaxNotesSize}", e.Message);
    }

    [Fact]
    public void ANoteSegmentOfEmptyNotesIsCappedInCount()
    {
        // 1 MiB of zero bytes is 87,381 empty 12-byte notes, one object each.
        byte[] core = SmallCore();
        byte[] hostile = new byte[core.Length + (1 << 20)];
        core.CopyTo(hostile, 0);
        BinaryPrimitives.WriteUInt64LittleEndian(hostile.AsSpan(Phdr(core, 0) + 8), (ulong)core.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(hostile.AsSpan(Phdr(core, 0) + 32), 1 << 20);
        var e = Assert.Throws<VmStateFormatException>(() => ElfCoreReader.Read(new MemorySource(hostile), "t"));
        Assert.Contains($"more than {ElfCoreReader.MaxNotes} notes", e.Message);
    }

    [Theory]
    [InlineData(0x1000, false)] // an alias: the same file bytes for the same physical addresses
    [InlineData(0x2000, true)] // other bytes for 0x1000-0x1fff than the first segment gives
    public void OverlappingSegmentsThatDisagreeAreReported(int fileDelta, bool conflict)
    {
        byte[] core = SmallCore();
        int load = Phdr(core, 1);
        int other = Phdr(core, 0); // the PT_NOTE header becomes a second PT_LOAD over [0x1000, 0x2000)
        ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(core.AsSpan(load + 8));
        BinaryPrimitives.WriteUInt32LittleEndian(core.AsSpan(other), ElfConstants.PtLoad);
        BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan(other + 8), offset + (ulong)fileDelta);
        BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan(other + 24), 0x1000);
        BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan(other + 32), 0x1000);
        BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan(other + 40), 0x1000);
        using MachineState m = ElfCoreReader.Read(new MemorySource(core), "t");
        Assert.Equal(0x10000UL, Assert.Single(m.Memory.Ranges).Length);
        Assert.Equal(conflict, m.Warnings.Any(w => w.Contains("different file bytes", StringComparison.Ordinal)));
        byte[] b = new byte[1];
        m.Memory.ReadExactly(0x1800, b);
        Assert.Equal(Content(0x1800), b[0]); // the first (longer) segment wins
    }

    internal static byte[] VmcoreinfoNote(string text)
    {
        var n = new ElfNote("VMCOREINFO", 0, System.Text.Encoding.ASCII.GetBytes(text));
        byte[] b = new byte[n.EncodedSize];
        n.Encode(b);
        return b;
    }

    private sealed class BrokenMemory : IPhysicalMemory
    {
        public string Name => "broken";

        public IReadOnlyList<MemoryRange> Ranges { get; } = [new MemoryRange(0, 16 << 20, "r")];

        public int Read(ulong address, Span<byte> destination) => address < (8 << 20) ? destination.Length : throw new IOException("disk went away");
    }
}
