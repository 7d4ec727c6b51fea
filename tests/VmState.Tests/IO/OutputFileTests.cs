using VmState.Arch.X86;
using VmState.Export;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;
using VmState.Tests.Support;

namespace VmState.Tests.IO;

/// <summary>
/// Outputs can never replace inputs (compared by file identity, not path strings), are no wider in permission than
/// the input, appear complete or not at all, and temporaries of killed runs are cleaned up.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class OutputFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-out-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Input(string name, UnixFileMode mode, int size = 4096)
    {
        string path = Path.Combine(_dir, name);
        byte[] data = new byte[size];
        new Random(name.Length).NextBytes(data);
        File.WriteAllBytes(path, data);
        File.SetUnixFileMode(path, mode);
        return path;
    }

    private const UnixFileMode Mode0640 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead;

    [Theory]
    [InlineData("same")]
    [InlineData("dotdot")]
    [InlineData("symlink")]
    [InlineData("hardlink")]
    public void AnOutputThatIsTheInputUnderAnyNameIsRefusedAndTheInputIsUntouched(string how)
    {
        string input = Input("in.mig", Mode0640);
        byte[] before = File.ReadAllBytes(input);
        string target = how switch
        {
            "same" => input,
            "dotdot" => Path.Combine(_dir, "sub", "..", "in.mig"),
            "symlink" => File.CreateSymbolicLink(Path.Combine(_dir, "link.mig"), input).FullName,
            _ => HardLink(input, Path.Combine(_dir, "hard.mig")),
        };
        Directory.CreateDirectory(Path.Combine(_dir, "sub"));
        OutputRules rules = OutputRules.ForInputs([input]);
        var e = Assert.Throws<ArgumentException>(() => OutputFile.Write(target, rules, s => s.Write(new byte[10])));
        Assert.Contains("is the input", e.Message);
        Assert.Equal(before, File.ReadAllBytes(input));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
    }

    [Fact]
    public void OutputsAreNoWiderThanTheInputAndPrivateWithoutOne()
    {
        string input = Input("in.mig", Mode0640);
        string output = Path.Combine(_dir, "out.bin");
        OutputFile.Write(output, OutputRules.ForInputs([input]), s => s.Write(new byte[10]));
        Assert.Equal(Mode0640, File.GetUnixFileMode(output) & Mode0640);
        Assert.Equal((UnixFileMode)0, File.GetUnixFileMode(output) & (UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.GroupWrite));

        string two = Input("two.mig", UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        string both = Path.Combine(_dir, "both.bin");
        OutputFile.Write(both, OutputRules.ForInputs([input, two]), s => s.Write(new byte[10]));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(both));

        string live = Path.Combine(_dir, "live.bin");
        OutputFile.Write(live, OutputRules.None, s => s.Write(new byte[10]));
        Assert.Equal(OutputRules.PrivateMode, File.GetUnixFileMode(live));
    }

    [Fact]
    public void AnExistingFileIsKeptWhenReplacingIsNotAllowed()
    {
        string existing = Input("keep.bin", Mode0640);
        byte[] before = File.ReadAllBytes(existing);
        var e = Assert.Throws<ArgumentException>(() => OutputFile.Write(existing, OutputRules.None.WithoutReplace(), s => s.Write(new byte[1])));
        Assert.Contains("exists", e.Message);
        Assert.Equal(before, File.ReadAllBytes(existing));
    }

    [Fact]
    public void TemporariesOfAKilledRunAreRemovedButALiveWritersAreKept()
    {
        string stale = Path.Combine(_dir, ".out.bin.4242.0123456789abcdef.tmp");
        File.WriteAllBytes(stale, new byte[100]);
        string live = Path.Combine(_dir, ".out.bin.4243.fedcba9876543210.tmp");
        using (var holder = new FileStream(live, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None))
        {
            OutputFile.Write(Path.Combine(_dir, "out.bin"), OutputRules.None, s => s.Write(new byte[1]));
            Assert.False(File.Exists(stale));
            Assert.True(File.Exists(live));
        }

        Assert.Equal(1, OutputFile.RemoveStaleTemporaries(_dir, "out.bin"));
        Assert.False(File.Exists(live));
    }

    [Fact]
    public void AFailedWriteLeavesNothingAndKeepsThePreviousFile()
    {
        string output = Input("out.bin", Mode0640);
        byte[] before = File.ReadAllBytes(output);
        Assert.Throws<IOException>(() => OutputFile.Write(output, OutputRules.None, s =>
        {
            s.Write(new byte[1000]);
            throw new IOException("No space left on device");
        }));
        Assert.Equal(before, File.ReadAllBytes(output));
        Assert.Single(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void ExtractIntoTheDirectoryHoldingItsInputIsRefused()
    {
        // The regression: `extract out/core.elf -o out` replaced its own input.
        string input = Input("core.elf", Mode0640, 8192);
        byte[] before = File.ReadAllBytes(input);
        using MachineState m = Machine(input, new SyntheticMemory([new MemoryRange(0, 0x10000, "ram")], a => (byte)a));
        var e = Assert.Throws<ArgumentException>(() => MachineExport.Write(m, _dir, new MachineExport.Options(false, null, [])));
        Assert.Contains("is the input", e.Message);
        Assert.Equal(before, File.ReadAllBytes(input));
        Assert.Equal([input], Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void ExtractWritesTheSetTogetherRemovesAStaleXmlAndLeavesTheDirectoryAsItWasOnFailure()
    {
        string input = Input("guest.mig", Mode0640);
        string outDir = Path.Combine(_dir, "out");
        using MachineState good = Machine(input, new SyntheticMemory([new MemoryRange(0, 0x10000, "ram")], a => (byte)a));
        MachineExport.Result first = MachineExport.Write(good, outDir, new MachineExport.Options(true, null, []));
        Assert.NotNull(first.HardwareXml);
        Assert.Equal(Mode0640, File.GetUnixFileMode(first.Core.Path) & Mode0640);
        Assert.Equal((UnixFileMode)0, File.GetUnixFileMode(first.HardwareJson) & UnixFileMode.OtherRead);

        // Without --xml, the XML of the first run would describe another state than the new core: it goes.
        MachineExport.Result second = MachineExport.Write(good, outDir, new MachineExport.Options(false, null, []));
        Assert.Equal(Path.Combine(outDir, "hardware.xml"), second.RemovedStale);
        Assert.Equal(["core.elf", "hardware.json"], Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        // A read error half way (as a full disk or a bad input would) leaves the previous set exactly as it was.
        byte[] core = File.ReadAllBytes(second.Core.Path);
        byte[] json = File.ReadAllBytes(second.HardwareJson);
        using MachineState broken = Machine(input, new BrokenMemory());
        Assert.Throws<IOException>(() => MachineExport.Write(broken, outDir, new MachineExport.Options(true, null, [])));
        Assert.Equal(core, File.ReadAllBytes(second.Core.Path));
        Assert.Equal(json, File.ReadAllBytes(second.HardwareJson));
        Assert.Equal(["core.elf", "hardware.json"], Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        // A directory this run created is removed again when the run fails.
        string fresh = Path.Combine(_dir, "fresh");
        Assert.Throws<IOException>(() => MachineExport.Write(broken, fresh, new MachineExport.Options(false, null, [])));
        Assert.False(Directory.Exists(fresh));
    }

    private static MachineState Machine(string source, IPhysicalMemory memory) =>
        new(new MachineOrigin(MachineOriginKind.RawImage, source, "test"), null, memory, [new X86CpuState { Index = 0 }], [], [], [], null);

    private static string HardLink(string existing, string link)
    {
        if (Link(existing, link) != 0)
        {
            throw new IOException("link(2) failed");
        }

        return link;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "link", SetLastError = true)]
    private static extern int Link(string oldPath, string newPath);

    private sealed class BrokenMemory : IPhysicalMemory
    {
        public string Name => "broken";

        public IReadOnlyList<MemoryRange> Ranges { get; } = [new MemoryRange(0, 16 << 20, "r")];

        public int Read(ulong address, Span<byte> destination) => address < (8 << 20) ? destination.Length : throw new IOException("disk went away");
    }
}
