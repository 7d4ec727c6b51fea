using VmState.Export;
using VmState.Formats.Migration;
using VmState.Gdb;
using VmState.IO;
using VmState.Machine;

namespace VmState.Tests.Gdb;

/// <summary><c>monitor save NAME</c>: only into the save directory, by bare name, never over a file or the input.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class GdbSaveTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-gdbsave-").FullName;
    private readonly string _input;
    private readonly string _out;
    private readonly byte[] _inputBytes = GdbServerHarness.StreamBytes();

    public GdbSaveTests()
    {
        _input = Path.Combine(_dir, "input.mig");
        File.WriteAllBytes(_input, _inputBytes);
        File.SetUnixFileMode(_input, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        _out = Directory.CreateDirectory(Path.Combine(_dir, "out")).FullName;
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private GdbServerHarness Serve(string? saveDir, bool allowOverwrite = false) =>
        new(GdbServerHarness.FileMachine(_input), new GdbServerOptions { SaveDirectory = saveDir is null ? null : new SaveDirectory(saveDir, allowOverwrite, _input) });

    [Fact]
    public void SaveIsDisabledWithoutASaveDirectory()
    {
        using GdbServerHarness h = Serve(null);
        using GdbTestClient c = h.Connect();
        Assert.Equal("OK", c.Send("M5000,1:ff"));
        Assert.Equal("E01", c.Monitor($"save {Path.Combine(_dir, "x.mig")}"));
        Assert.Contains("saving is disabled", c.Output, StringComparison.Ordinal);
        Assert.Contains("--save-dir", c.Output, StringComparison.Ordinal);
        Assert.Equal("E01", c.Monitor("save x.mig"));
        Assert.Equal(["input.mig", "out"], Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(_inputBytes, File.ReadAllBytes(_input));
    }

    [Theory]
    [InlineData("../escape.mig")]
    [InlineData("sub/x.mig")]
    [InlineData("/etc/passwd")]
    [InlineData("..\\x.mig")]
    [InlineData("..")]
    [InlineData(".")]
    [InlineData("a..b")]
    [InlineData(".hidden")]
    [InlineData("-rf")]
    [InlineData("bell\u0007.mig")]
    [InlineData("new\nline")]
    public void NamesThatAreNotBareFileNamesAreRefused(string name)
    {
        using GdbServerHarness h = Serve(_out);
        using GdbTestClient c = h.Connect();
        Assert.Equal("OK", c.Send("M5000,1:ff"));
        Assert.Equal("E01", c.Monitor($"save {name}"));
        Assert.Contains("cannot save", c.Output, StringComparison.Ordinal);
        Assert.Contains("edits are kept", c.Output, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_out));
        Assert.Equal(["input.mig", "out"], Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void TooLongANameIsRefusedAndAGoodOneIsWrittenInTheSaveDirectory()
    {
        using GdbServerHarness h = Serve(_out);
        using GdbTestClient c = h.Connect();
        Assert.Equal("OK", c.Send("M5000,1:ff"));
        Assert.Equal("E01", c.Monitor($"save {new string('a', 256)}"));
        Assert.Contains("longer than 255 bytes", c.Output, StringComparison.Ordinal);
        Assert.Equal("OK", c.Monitor("save good name.mig"));
        Assert.Equal(["good name.mig"], Directory.GetFileSystemEntries(_out).Select(Path.GetFileName));
        using MachineState back = GdbServerHarness.FileMachine(Path.Combine(_out, "good name.mig"));
        byte[] b = new byte[2];
        back.Memory.Read(0x5000, b);
        Assert.Equal(new byte[] { 0xff, 1 }, b);
    }

    [Fact]
    public void AnExistingFileIsNotReplacedUnlessOverwriteWasAllowed()
    {
        string existing = Path.Combine(_out, "exists.mig");
        File.WriteAllText(existing, "keep me");
        using (GdbServerHarness h = Serve(_out))
        using (GdbTestClient c = h.Connect())
        {
            Assert.Equal("OK", c.Send("M5000,1:ff"));
            Assert.Equal("E01", c.Monitor("save exists.mig"));
            Assert.Contains("exists", c.Output, StringComparison.Ordinal);
            Assert.Contains("--allow-overwrite", c.Output, StringComparison.Ordinal);
        }

        Assert.Equal("keep me", File.ReadAllText(existing));
        Assert.Single(Directory.GetFileSystemEntries(_out));

        using (GdbServerHarness h = Serve(_out, allowOverwrite: true))
        using (GdbTestClient c = h.Connect())
        {
            Assert.Equal("OK", c.Send("M5000,1:ff"));
            Assert.Equal("OK", c.Monitor("save exists.mig"));
        }

        using MachineState replaced = GdbServerHarness.FileMachine(existing);
        Assert.Equal(0xff, Read(replaced.Memory, 0x5000));
    }

    private static byte Read(VmState.Memory.IPhysicalMemory memory, ulong address)
    {
        byte[] b = new byte[1];
        memory.Read(address, b);
        return b[0];
    }

    [Fact]
    public void TheInputIsNeverReplacedNotByNameNorThroughAHardLinkOrSymlink()
    {
        File.CreateSymbolicLink(Path.Combine(_out, "symlink.mig"), _input);
        Assert.Equal(0, Link(_input, Path.Combine(_out, "hardlink.mig")));
        Assert.True(FileIdentity.TryGet(Path.Combine(_out, "hardlink.mig"), out FileIdentity linked));
        Assert.True(FileIdentity.TryGet(_input, out FileIdentity input));
        Assert.Equal(input, linked);

        // Overwriting allowed, and the input's own directory as save directory: the worst case.
        foreach ((string dir, string name) in new[] { (_dir, "input.mig"), (_out, "symlink.mig"), (_out, "hardlink.mig") })
        {
            using GdbServerHarness h = Serve(dir, allowOverwrite: true);
            using GdbTestClient c = h.Connect();
            Assert.Equal("OK", c.Send("M5000,1:ff"));
            Assert.Equal("E01", c.Monitor($"save {name}"));
            Assert.Contains("is the snapshot being served", c.Output, StringComparison.Ordinal);
        }

        Assert.Equal(_inputBytes, File.ReadAllBytes(_input));
        Assert.Equal(_input, new FileInfo(Path.Combine(_out, "symlink.mig")).LinkTarget);
        Assert.Equal(["hardlink.mig", "symlink.mig"], Directory.GetFileSystemEntries(_out).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void TheSavedFileIsNoMoreReadableThanTheInput()
    {
        using GdbServerHarness h = Serve(_out);
        using GdbTestClient c = h.Connect();
        Assert.Equal("OK", c.Send("M5000,1:ff"));
        File.SetUnixFileMode(_input, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        Assert.Equal("OK", c.Monitor("save copy.mig"));

        // The mode was taken when the server started (0640): not the later 0744, and never execute bits.
        UnixFileMode mode = File.GetUnixFileMode(Path.Combine(_out, "copy.mig"));
        UnixFileMode started = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead;
        Assert.Equal(UnixFileMode.None, mode & ~started);
        Assert.Equal(UnixFileMode.UserRead, mode & UnixFileMode.UserRead);
    }

    [Fact]
    public void AFailedSaveReportsTheErrorAndKeepsTheEdits()
    {
        // A directory where the file should go makes rename(2) fail with EISDIR, for root too.
        Directory.CreateDirectory(Path.Combine(_out, "taken.mig"));
        using GdbServerHarness h = Serve(_out, allowOverwrite: true);
        using GdbTestClient c = h.Connect();
        Assert.Equal("OK", c.Send("M5000,2:aabb"));
        Assert.Equal("E01", c.Monitor("save taken.mig"));
        Assert.Contains("nothing was saved; the 1 edits are kept", c.Output, StringComparison.Ordinal);
        Assert.Equal(["taken.mig"], Directory.GetFileSystemEntries(_out).Select(Path.GetFileName));

        // Still serving, the overlay intact, and a save under another name carries the edit.
        Assert.Equal("aabb02", c.Send("m5000,3"));
        Assert.Equal("OK", c.Monitor("edits"));
        Assert.Contains("wrote 2 bytes at guest-physical 0x5000", c.Output, StringComparison.Ordinal);
        Assert.Equal("OK", c.Monitor("save second.mig"));
        using MachineState back = GdbServerHarness.FileMachine(Path.Combine(_out, "second.mig"));
        Assert.Equal(0xbb, Read(back.Memory, 0x5001));
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "link", SetLastError = true)]
    private static extern int Link(string existing, string created);
}
