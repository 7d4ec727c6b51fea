using System.Buffers.Binary;
using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Tests.Formats;

/// <summary>The ELF-core builder's three steps: what Verify refuses, where Layout puts things, and what WriteTo emits.</summary>
public sealed class ElfCoreBuilderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-elfbuilder-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static ElfSegmentSource Fill(Func<ulong, byte> content) => (output, _) =>
    {
        byte[] b = new byte[output.Length];
        for (int i = 0; i < b.Length; i++)
        {
            b[i] = content((ulong)i);
        }

        output.Write(0, b);
    };

    private string Write(ElfCoreBuilder core, string name)
    {
        string path = Path.Combine(_dir, name);
        using OutputFile output = OutputFile.Create(path, OutputRules.ForInputs([]));
        core.Layout().WriteTo(output);
        output.Commit();
        return path;
    }

    private static (uint Type, uint Flags, ulong Offset, ulong Vaddr, ulong Paddr, ulong FileSize, ulong MemSize, ulong Align) Phdr(ReadOnlySpan<byte> file, long phoff, int index)
    {
        ReadOnlySpan<byte> p = file.Slice((int)phoff + (56 * index), 56);
        return (BinaryPrimitives.ReadUInt32LittleEndian(p), BinaryPrimitives.ReadUInt32LittleEndian(p[4..]), BinaryPrimitives.ReadUInt64LittleEndian(p[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(p[16..]), BinaryPrimitives.ReadUInt64LittleEndian(p[24..]), BinaryPrimitives.ReadUInt64LittleEndian(p[32..]),
            BinaryPrimitives.ReadUInt64LittleEndian(p[40..]), BinaryPrimitives.ReadUInt64LittleEndian(p[48..]));
    }

    [Fact]
    public void VerifyListsEveryProblemAtOnceAndLayoutRefusesTheModel()
    {
        var core = new ElfCoreBuilder();
        core.AddNote(new ElfNote("CORE", 1, new byte[8]));
        core.AddNote(new ElfNote("CÖRE", 1, []));
        core.AddNote(new ElfNote(new string('n', 4096), 1, []));
        core.AddEncodedNote(new byte[10]);
        byte[] lying = new byte[24];
        BinaryPrimitives.WriteUInt32LittleEndian(lying, 4);
        BinaryPrimitives.WriteUInt32LittleEndian(lying.AsSpan(4), 100); // a 100-byte descriptor in 8 bytes
        core.AddEncodedNote(lying);
        ElfCoreSegment ram = core.AddLoad(0x1000, 0x1000, 0, 0, 0x2000, 0x2000, null);
        core.AddLoad(0x4000, 0, 6, 0, 0x2000, 0x1000, null);
        core.AddLoad(0x8000, 0, 6, 3, 0x1000, 0x1000, null);
        core.AddLoad(0xffff_ffff_ffff_f000, 0, 4, 0, 0, 0x2000, null);
        core.AddLoad(0x10000, 0xffff_ffff_ffff_f001, 4, 0, 0x1000, 0x1000, null);
        core.AddAlias(ram, 0x1000, 0xffffffff81000000, 0x2000, 0, 0, 0x1001);

        IReadOnlyList<string> problems = core.Verify();

        string[] expected =
        [
            "note 1: the name \"CÖRE\" holds a character that is not ASCII",
            "note 2: the name has 4096 characters; at most 4095",
            "note 3: 10 encoded bytes are not a 12-byte note header",
            "note 4: name size 4 and descriptor size 100 make a 116-byte note, not the 24 bytes given",
            "segment 1 (p_vaddr 0x4000): p_filesz 0x2000 is larger than p_memsz 0x1000",
            "segment 2 (p_vaddr 0x8000): alignment 3 is not a power of two",
            "segment 3 (p_vaddr 0xfffffffffffff000): p_vaddr + p_memsz 0x2000 wraps",
            "segment 4 (p_vaddr 0x10000): p_paddr 0xfffffffffffff001 + p_memsz 0x1000 wraps",
            "segment 5 (p_vaddr 0xffffffff81000000): as an alias of segment 0, its 0x1001 bytes at offset 0x1000 run past that segment's 0x2000 file bytes",
        ];
        Assert.Equal(expected.Length, problems.Count);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.StartsWith(expected[i], problems[i], StringComparison.Ordinal);
        }

        var e = Assert.Throws<InvalidOperationException>(() => core.Layout());
        Assert.All(expected, x => Assert.Contains(x, e.Message, StringComparison.Ordinal));
    }

    [Fact]
    public void FileSizesThatDoNotFitInAFileAreRefusedWithoutOverflowing()
    {
        var huge = new ElfCoreBuilder();
        huge.AddLoad(0, 0, 0, 0, 1UL << 63, 1UL << 63, null);
        Assert.Contains(huge.Verify(), p => p.Contains("p_filesz 0x8000000000000000 is larger than a file can be", StringComparison.Ordinal));

        var sum = new ElfCoreBuilder();
        sum.AddLoad(0, 0, 0, 0, 1UL << 62, 1UL << 62, null);
        sum.AddLoad(1UL << 62, 1UL << 62, 0, 0, 1UL << 62, 1UL << 62, null);
        Assert.Equal(["the segments' file bytes add up to more than a file can hold (2^63 - 1 bytes)"], sum.Verify());
        Assert.Throws<InvalidOperationException>(() => sum.Layout());
    }

    [Fact]
    public void AnAliasMustAliasASegmentOfItsOwnCoreThatHasBytes()
    {
        var core = new ElfCoreBuilder();
        var other = new ElfCoreBuilder();
        ElfCoreSegment ram = core.AddLoad(0, 0, 0, 0, 0x1000, 0x1000, null);
        ElfCoreSegment alias = core.AddAlias(ram, 0, 0xffff888000000000, 0, 0, 0, 0x1000);
        Assert.Throws<ArgumentException>(() => other.AddAlias(ram, 0, 0, 0, 0, 0, 0x10));
        Assert.Throws<ArgumentException>(() => core.AddAlias(alias, 0, 0, 0, 0, 0, 0x10));
        Assert.Throws<ArgumentNullException>(() => core.AddAlias(null!, 0, 0, 0, 0, 0, 0x10));
        Assert.Throws<ArgumentNullException>(() => core.AddNote(null!));
        Assert.Throws<ArgumentNullException>(() => core.AddEncodedNote(null!));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ElfCoreBuilder { DataAlignment = 3000 });

        // An alias's p_offset is its target's plus the offset: it cannot be moved to honour an alignment.
        core.AddAlias(ram, 0x10, 0x7000, 0x10, 0, 0x1000, 0x100);
        Assert.Contains(core.Verify(), p => p.Contains("is not congruent to p_vaddr modulo its alignment 4096", StringComparison.Ordinal));
    }

    [Fact]
    public void LayoutPacksHeadersAndNotesThenAlignedDataWithAliasesInsideTheirTargets()
    {
        var core = new ElfCoreBuilder { NoteAlignment = 4 };
        var note = new ElfNote("CORE", 1, [1, 2, 3, 4, 5]);
        core.AddNote(note);
        ElfCoreSegment a = core.AddLoad(0x400000, 0, 5, 0x1000, 0x1000, 0x1000, Fill(i => (byte)(i + 1)));
        ElfCoreSegment none = core.AddLoad(0x600000, 0, 6, 0x1000, 0, 0x3000, null); // VM_DONTDUMP: no file bytes
        ElfCoreSegment b = core.AddLoad(0x7ffd0234, 0, 6, 0x1000, 0x100, 0x100, Fill(i => (byte)(0x80 + i)));
        ElfCoreSegment c = core.AddLoad(0x10, 0, 6, 0, 0x10, 0x10, Fill(_ => 0xcc)); // no alignment: right after b
        ElfCoreSegment alias = core.AddAlias(a, 0x800, 0xffffffff81000000, 0x800, 4, 0, 0x10);

        ElfCoreLayout layout = core.Layout();

        Assert.Equal(6, layout.ProgramHeaderCount);
        Assert.False(layout.ExtendedNumbering);
        Assert.Equal((0L, 64L), (layout.SectionHeaderOffset, layout.ProgramHeaderOffset));
        Assert.Equal(64 + (6 * 56), layout.NotesOffset);
        Assert.Equal(note.EncodedSize, layout.NotesSize);
        Assert.Equal(0x1000, layout.OffsetOf(a));            // the first page boundary after 400 bytes of headers
        Assert.Equal(0x2000, layout.OffsetOf(none));         // where the next bytes would go; takes none
        Assert.Equal(0x2234, layout.OffsetOf(b));            // p_offset ≡ p_vaddr (mod 4096)
        Assert.Equal(0x2334, layout.OffsetOf(c));
        Assert.Equal(0x1800, layout.OffsetOf(alias));
        Assert.Equal(0x2344, layout.FileSize);
        Assert.Throws<ArgumentException>(() => layout.OffsetOf(new ElfCoreBuilder().AddLoad(0, 0, 0, 0, 0, 0, null)));

        byte[] file = File.ReadAllBytes(Write(core, "layout.core"));
        Assert.Equal(layout.FileSize, file.Length);
        Assert.Equal((ElfConstants.PtNote, 0u, (ulong)layout.NotesOffset, 0UL, 0UL, (ulong)note.EncodedSize, (ulong)note.EncodedSize, 4UL), Phdr(file, 64, 0));
        Assert.Equal((ElfConstants.PtLoad, 6u, 0x2234UL, 0x7ffd0234UL, 0UL, 0x100UL, 0x100UL, 0x1000UL), Phdr(file, 64, 3));
        Assert.Equal((ElfConstants.PtLoad, 4u, 0x1800UL, 0xffffffff81000000UL, 0x800UL, 0x10UL, 0x10UL, 0UL), Phdr(file, 64, 5));
        Assert.Equal((ElfConstants.PtLoad, 6u, 0x2000UL, 0x600000UL, 0UL, 0UL, 0x3000UL, 0x1000UL), Phdr(file, 64, 2));
        ElfNote decoded = Assert.Single(ElfNote.DecodeAll(file.AsSpan((int)layout.NotesOffset, note.EncodedSize), layout.NotesOffset));
        Assert.Equal((note.Name, note.Type), (decoded.Name, decoded.Type));
        Assert.Equal(note.Descriptor, decoded.Descriptor);
        Assert.Equal((byte)0x01, file[0x1000]);
        Assert.Equal((byte)0x80, file[0x2234]);
        Assert.Equal((byte)0xcc, file[0x2343]);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(40))); // e_shoff
        Assert.Equal(6, BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(56)));
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(60)));  // e_shnum
    }

    [Theory]
    [InlineData(65_533, false)]
    [InlineData(65_534, true)]
    public void AtPnXnumTheCountMovesToSectionHeaderZero(int segments, bool extended)
    {
        var core = new ElfCoreBuilder { DataAlignment = 16 };
        core.AddNote(new ElfNote("CORE", 1, new byte[4]));
        for (int i = 0; i < segments; i++)
        {
            core.AddLoad((ulong)i << 12, 0, 4, 0, 0, 0x1000, null);
        }

        ElfCoreLayout layout = core.Layout();
        Assert.Equal(extended, layout.ExtendedNumbering);
        long phoff = extended ? 128 : 64;
        Assert.Equal(phoff, layout.ProgramHeaderOffset);
        Assert.Equal(phoff + ((segments + 1) * 56L), layout.NotesOffset);

        byte[] file = File.ReadAllBytes(Write(core, "count.core"));
        ReadOnlySpan<byte> h = file;
        Assert.Equal((ulong)phoff, BinaryPrimitives.ReadUInt64LittleEndian(h[32..]));
        Assert.Equal(extended ? 64UL : 0UL, BinaryPrimitives.ReadUInt64LittleEndian(h[40..]));
        Assert.Equal(extended ? 0xffff : segments + 1, BinaryPrimitives.ReadUInt16LittleEndian(h[56..]));
        Assert.Equal(64, BinaryPrimitives.ReadUInt16LittleEndian(h[58..]));                    // e_shentsize
        Assert.Equal(extended ? 1 : 0, BinaryPrimitives.ReadUInt16LittleEndian(h[60..]));   // e_shnum
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(h[62..]));                  // e_shstrndx: SHN_UNDEF
        if (extended)
        {
            // SHT_NULL with only sh_info set: sh_size and sh_link are 0 because e_shnum and e_shstrndx are real.
            byte[] want = new byte[64];
            BinaryPrimitives.WriteUInt32LittleEndian(want.AsSpan(44), (uint)segments + 1);
            Assert.Equal(want, file.AsSpan(64, 64).ToArray());
        }

        Assert.Equal(((ulong)(segments - 1)) << 12, Phdr(file, phoff, segments).Vaddr);
    }

    [Fact]
    public void SeventyThousandSegmentsReadBackThroughElfCoreReader()
    {
        const int Count = 70_000;
        var core = new ElfCoreBuilder();
        var cpu = new X86CpuState { Index = 0, Rip = 0xffffffff81001234 };
        cpu.Regs[0] = 0x1234;
        core.AddNote(X86CoreNotes.Prstatus(cpu));
        for (int i = 0; i < Count; i++)
        {
            ulong address = (ulong)i * 0x2000;
            int n = i;
            core.AddLoad(address, address, 6, 0, 0x10, 0x10, (output, _) => output.Write(8, BitConverter.GetBytes(n)));
        }

        string path = Write(core, "many.core");
        using MachineState back = SnapshotLoader.Open(path);
        Assert.Equal(Count, back.Memory.Ranges.Count);
        byte[] b = new byte[16];
        foreach (int i in (int[])[0, 1, 65_533, 65_534, Count - 1])
        {
            back.Memory.ReadExactly((ulong)i * 0x2000, b);
            Assert.Equal(i, BitConverter.ToInt32(b, 8));
            Assert.Equal(0UL, BitConverter.ToUInt64(b, 0));
        }

        Assert.Equal(0x1234UL, Assert.Single(back.Cpus).Regs[0]);
        Assert.Equal(0xffffffff81001234UL, back.Cpus[0].Rip);
    }

    [Fact]
    public void WhatASourceDoesNotWriteIsAHoleAndItCannotWriteOutsideItsSegment()
    {
        var core = new ElfCoreBuilder();
        bool calledForEmpty = false;
        core.AddLoad(0, 0, 0, 0, 16 << 20, 16 << 20, (output, _) =>
        {
            output.Write(0, new byte[] { 1, 2, 3 });
            output.Write((12 << 20) + 5, new byte[] { 4 });
            output.Write(output.Length - 1, new byte[] { 5 });
        });
        core.AddLoad(16 << 20, 16 << 20, 0, 0, 0, 0x1000, (_, _) => calledForEmpty = true);
        string path = Write(core, "sparse.core");
        long data = core.Layout().OffsetOf(core.Segments[0]);
        Assert.False(calledForEmpty);
        Assert.Equal(data + (16 << 20), new FileInfo(path).Length);
        Assert.Equal(data + (12 << 20), ElfCoreBytesTests.NextData(path, data + (1 << 20)) & ~0xfffL);
        using (FileStream f = File.OpenRead(path))
        {
            byte[] b = new byte[6];
            f.Position = data + (12 << 20);
            f.ReadExactly(b);
            Assert.Equal(new byte[] { 0, 0, 0, 0, 0, 4 }, b);
        }

        var bad = new ElfCoreBuilder();
        bad.AddLoad(0, 0, 0, 0, 0x10, 0x10, (output, _) => output.Write(0x8, new byte[9]));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Write(bad, "bad.core"));
        Assert.Contains("9 bytes at offset 0x8 do not fit in the segment's 0x10 file bytes", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_dir, "bad.core")));
    }

    [Fact]
    public void HeaderFieldsComeFromTheModel()
    {
        var core = new ElfCoreBuilder { Machine = ElfConstants.Em386, Flags = 0x12345678 };
        core.AddLoad(0, 0, 0, 0, 0x10, 0x10, null);
        byte[] file = File.ReadAllBytes(Write(core, "fields.core"));
        Assert.Equal("\x7f" + "ELF", System.Text.Encoding.ASCII.GetString(file, 0, 4));
        Assert.Equal(new byte[] { 2, 1, 1 }, file[4..7]); // ELFCLASS64, ELFDATA2LSB, EV_CURRENT
        Assert.Equal(ElfConstants.EtCore, BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(16)));
        Assert.Equal(ElfConstants.Em386, BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(18)));
        Assert.Equal(0x12345678u, BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(48)));
        Assert.Equal(4096, (int)Phdr(file, 64, 1).Offset);
    }
}
