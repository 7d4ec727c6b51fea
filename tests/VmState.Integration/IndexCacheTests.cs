using VmState.Integration.Harness;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>
/// The snapshot index cache through the CLI, on the fixture guest's migration stream (512 MiB of RAM, a stream above
/// <see cref="IndexCache.DefaultMinimumStreamBytes"/>): the second <c>ps</c> prints the same and says, in its
/// <c>--timings</c> report, that it used the entry; touching or appending to the file invalidates it;
/// <c>--no-cache</c> leaves the cache directory alone. Every run names its own temporary cache directory.
/// </summary>
public sealed class IndexCacheTests(DefaultLinuxGuest guest) : IClassFixture<DefaultLinuxGuest>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-indexcache-it-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string CopyOfStream()
    {
        string path = Path.Combine(_dir, "guest.mig");
        File.Copy(guest.Path("mig"), path);
        Assert.True(new FileInfo(path).Length >= IndexCache.DefaultMinimumStreamBytes, "the fixture stream is below the cache threshold: this test would prove nothing");
        return path;
    }

    private static (int Code, string Stdout, string Stderr) Ps(string mig, params string[] more) =>
        VmStateCli.Run(["ps", mig, "--timings", .. more]);

    /// <summary>The report line of the RAM index (the kernel location note has its own lines, "index cache: note …").</summary>
    private static string CacheLine(string stderr) =>
        Assert.Single(stderr.Split('\n'), l => l.StartsWith("index cache: ", StringComparison.Ordinal) && !l.StartsWith("index cache: note ", StringComparison.Ordinal));

    private static string[] NoteLines(string stderr) =>
        [.. stderr.Split('\n').Where(l => l.StartsWith("index cache: note kernel-location-", StringComparison.Ordinal))];

    [Fact]
    public void TheSecondPsUsesTheEntryAndPrintsTheSame()
    {
        string mig = CopyOfStream();
        string cache = Path.Combine(_dir, "cache");
        (int code, string first, string stderr) = Ps(mig, "--cache-dir", cache);
        Assert.True(code == 0, stderr);
        Assert.Matches("^index cache: no entry; written \\([0-9]+ bytes\\)$", CacheLine(stderr));
        Assert.Matches("^index cache: note kernel-location-vcb: no entry$", NoteLines(stderr)[0]);
        Assert.Matches("^index cache: note kernel-location-vcb: written \\([0-9]+ bytes\\)$", NoteLines(stderr)[1]);
        string entry = Assert.Single(Directory.GetFiles(cache, "*.idx"));
        string note = Assert.Single(Directory.GetFiles(cache, "*.note"));
        Assert.Equal(2, Directory.GetFiles(cache).Length);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(entry));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(note));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(cache));
        Assert.Equal([mig], Directory.GetFiles(_dir, "*", SearchOption.TopDirectoryOnly));

        (code, string second, stderr) = Ps(mig, "--cache-dir", cache);
        Assert.True(code == 0, stderr);
        Assert.Equal("index cache: hit", CacheLine(stderr));
        Assert.Equal(["index cache: note kernel-location-vcb: hit"], NoteLines(stderr));
        Assert.Equal(first, second);

        // The kernel found where the note says is the kernel a fresh search finds, with the same evidence.
        (code, string kernel1, _) = VmStateCli.Run(["kernel-info", mig, "--json", "--no-cache"]);
        Assert.Equal(0, code);
        (code, string kernel2, _) = VmStateCli.Run(["kernel-info", mig, "--json", "--cache-dir", cache]);
        Assert.Equal(0, code);
        Assert.Equal(kernel1, kernel2);

        (code, string json1, _) = VmStateCli.Run(["ps", mig, "--json", "--no-cache"]);
        Assert.Equal(0, code);
        (code, string json2, _) = VmStateCli.Run(["ps", mig, "--json", "--cache-dir", cache]);
        Assert.Equal(0, code);
        Assert.Equal(json1, json2);

        (code, string info1, _) = VmStateCli.Run(["info", mig, "--json", "--no-cache"]);
        Assert.Equal(0, code);
        (code, string info2, _) = VmStateCli.Run(["info", mig, "--json", "--cache-dir", cache]);
        Assert.Equal(0, code);
        Assert.Equal(info1, info2);
    }

    [Fact]
    public void TouchingOrAppendingInvalidatesTheEntry()
    {
        string mig = CopyOfStream();
        string cache = Path.Combine(_dir, "cache");
        (int code, string before, string stderr) = Ps(mig, "--cache-dir", cache);
        Assert.True(code == 0, stderr);

        File.SetLastWriteTimeUtc(mig, File.GetLastWriteTimeUtc(mig).AddSeconds(2));
        (code, string after, stderr) = Ps(mig, "--cache-dir", cache);
        Assert.True(code == 0, stderr);
        Assert.StartsWith("index cache: the file changed since the entry was written; written", CacheLine(stderr), StringComparison.Ordinal);
        Assert.Equal(before, after);
        (_, _, stderr) = Ps(mig, "--cache-dir", cache);
        Assert.Equal("index cache: hit", CacheLine(stderr));

        // Bytes after the VM description: the stream no longer ends where its description says. With the entry of
        // the unchanged file in place, the answer must be the one the file gives without any cache.
        using (FileStream f = File.Open(mig, FileMode.Append))
        {
            f.Write(new byte[4096]);
        }

        (int cachedCode, string cachedOut, string cachedErr) = VmStateCli.Run(["ps", mig, "--cache-dir", cache]);
        (int plainCode, string plainOut, string plainErr) = VmStateCli.Run(["ps", mig, "--no-cache"]);
        Assert.Equal((plainCode, plainOut, plainErr), (cachedCode, cachedOut, cachedErr));
        Assert.NotEqual(0, plainCode);
    }

    [Fact]
    public void NoCacheWritesNothingAndTheEnvironmentNamesTheDefaultDirectory()
    {
        string mig = CopyOfStream();
        string cache = Path.Combine(_dir, "cache");
        (int code, _, string stderr) = Ps(mig, "--no-cache", "--cache-dir", cache);
        Assert.True(code == 0, stderr);
        Assert.DoesNotContain("index cache:", stderr, StringComparison.Ordinal);
        Assert.False(Directory.Exists(cache));

        string fromEnvironment = Path.Combine(_dir, "env-cache");
        (code, _, stderr) = VmStateCli.Run(["ps", mig, "--timings"], new Dictionary<string, string> { [IndexCache.DirectoryVariable] = fromEnvironment });
        Assert.True(code == 0, stderr);
        Assert.StartsWith("index cache: no entry; written", CacheLine(stderr), StringComparison.Ordinal);
        Assert.Single(Directory.GetFiles(fromEnvironment, "*.idx"));
    }
}
