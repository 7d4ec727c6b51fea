using VmState.Arch.X86;
using VmState.IO;
using VmState.Linux;
using VmState.Machine;
using VmState.Tests.Support;

namespace VmState.Tests.Linux;

/// <summary>
/// The kernel location kept between runs in a machine's notes: the next search starts where the note says, finds the
/// same kernel with the same evidence, and a note that is damaged or points elsewhere is never believed.
/// </summary>
public class KernelLocationNoteTests
{
    /// <summary>Notes in a dictionary, counting reads and writes.</summary>
    private sealed class MemoryNotes : IMachineNotes
    {
        public Dictionary<string, byte[]> Notes { get; } = new(StringComparer.Ordinal);

        public int Writes { get; private set; }

        public byte[]? Read(string kind) => Notes.GetValueOrDefault(kind);

        public void Write(string kind, ReadOnlySpan<byte> value)
        {
            Notes[kind] = value.ToArray();
            Writes++;
        }
    }

    public static TheoryData<PagingMode, bool, bool> Cases() => new()
    {
        { PagingMode.Level4, true, true },
        { PagingMode.Level5, true, true },
        { PagingMode.Level4, false, true },
        { PagingMode.Level5, false, false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheNotedLocationGivesTheKernelASearchGives(PagingMode mode, bool vmcoreinfo, bool cpus)
    {
        var s = new SyntheticLinux(mode, vmcoreinfo: vmcoreinfo, cpus: cpus);
        var notes = new MemoryNotes();
        s.Machine.Notes = notes;

        LinuxKernel searched = KernelLocator.Locate(s.Machine);
        Assert.Equal(1, notes.Writes);
        string kind = Assert.Single(notes.Notes.Keys);
        Assert.Equal("kernel-location-vcb", kind);

        LinuxKernel noted = KernelLocator.Locate(s.Machine);
        Assert.Equal(1, notes.Writes); // found through the note: nothing new to keep
        Assert.Equal(searched.Method, noted.Method);
        Assert.Equal(searched.PageTableRoot, noted.PageTableRoot);
        Assert.Equal(searched.Paging, noted.Paging);
        Assert.Equal(searched.TextAddress, noted.TextAddress);
        Assert.Equal(searched.PhysBase, noted.PhysBase);
        Assert.Equal(searched.Banner, noted.Banner);
        Assert.Equal(searched.Symbols.Count, noted.Symbols.Count);
        Assert.Equal(searched.VmcoreinfoSource, noted.VmcoreinfoSource);
        Assert.Equal(searched.Vmcoreinfo?.Text, noted.Vmcoreinfo?.Text);
        Assert.Equal(searched.Evidence, noted.Evidence);
    }

    [Fact]
    public void ANoteThatDoesNotValidateIsIgnoredAndReplaced()
    {
        var s = new SyntheticLinux(PagingMode.Level4);
        var notes = new MemoryNotes();
        s.Machine.Notes = notes;
        LinuxKernel searched = KernelLocator.Locate(s.Machine);
        KernelLocationNote good = KernelLocationNote.Decode(notes.Notes["kernel-location-vcb"]);

        // A root where no kernel is: the note is not believed, the search runs and keeps a good note again.
        notes.Notes["kernel-location-vcb"] = (good with { Cr3 = 0x5000 }).Encode()!;
        Assert.Null(KernelLocator.FromNote(s.Machine, notes.Notes["kernel-location-vcb"]));
        LinuxKernel again = KernelLocator.Locate(s.Machine);
        Assert.Equal(searched.PageTableRoot, again.PageTableRoot);
        Assert.Equal(searched.Evidence, again.Evidence);
        Assert.Equal(good, KernelLocationNote.Decode(notes.Notes["kernel-location-vcb"]), NoteComparer.Instance);

        // Bytes that are not a note: ignored the same way.
        notes.Notes["kernel-location-vcb"] = [1, 2, 3];
        Assert.Equal(searched.PageTableRoot, KernelLocator.Locate(s.Machine).PageTableRoot);
    }

    [Fact]
    public void OtherStrategiesUseTheirOwnNote()
    {
        var s = new SyntheticLinux(PagingMode.Level4);
        var notes = new MemoryNotes();
        s.Machine.Notes = notes;
        _ = KernelLocator.Locate(s.Machine);
        LinuxKernel k = KernelLocator.Locate(s.Machine, new KernelLocatorOptions { UseVmcoreinfo = false });
        Assert.Equal(KernelLocationMethod.ControlRegister, k.Method);
        Assert.Equal(["kernel-location-vcb", "kernel-location--cb"], notes.Notes.Keys.Order(StringComparer.Ordinal).Reverse());
    }

    [Fact]
    public void ANoteRoundTripsAndEveryTruncationIsAFormatError()
    {
        var note = new KernelLocationNote(KernelLocationMethod.Banner, PagingMode.Level5, 0x1234000, null, "scan", ["a", "ünïcode"]);
        byte[] bytes = note.Encode()!;
        Assert.Equal(note, KernelLocationNote.Decode(bytes), NoteComparer.Instance);
        for (int n = 0; n < bytes.Length; n++)
        {
            Assert.Throws<VmStateFormatException>(() => KernelLocationNote.Decode(bytes.AsSpan(0, n)));
        }

        byte[] badMode = (byte[])bytes.Clone();
        badMode[2] = (byte)PagingMode.Pae;
        Assert.Contains("paging mode", Assert.Throws<VmStateFormatException>(() => KernelLocationNote.Decode(badMode)).Message, StringComparison.Ordinal);
    }

    private sealed class NoteComparer : IEqualityComparer<KernelLocationNote>
    {
        public static readonly NoteComparer Instance = new();

        public bool Equals(KernelLocationNote? x, KernelLocationNote? y) =>
            x is not null && y is not null && x.Method == y.Method && x.Mode == y.Mode && x.Cr3 == y.Cr3
            && x.VmcoreinfoText == y.VmcoreinfoText && x.VmcoreinfoSource == y.VmcoreinfoSource && x.Evidence.SequenceEqual(y.Evidence);

        public int GetHashCode(KernelLocationNote obj) => obj.Cr3.GetHashCode();
    }
}
