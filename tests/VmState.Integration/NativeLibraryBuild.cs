using VmState.Integration.Harness;

namespace VmState.Integration;

/// <summary>
/// libvmstate.so published once for <see cref="NativeAbiTests"/> by eng/native.sh (Native AOT, 1–2 minutes) into a
/// temporary directory, which is deleted afterwards.
/// </summary>
public sealed class NativeLibraryBuild : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-native-").FullName;
    private readonly Lazy<string> _library;

    public NativeLibraryBuild()
    {
        _library = new Lazy<string>(Publish, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The published libvmstate.so (built on first use).</summary>
    public string LibraryPath => _library.Value;

    /// <summary>A scratch directory next to the library, removed with it.</summary>
    public string WorkDir => _dir;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Publish()
    {
        HostCommand.Result publish = HostCommand.Run("bash", [Path.Combine(RepoPaths.Root, "eng", "native.sh"), Path.Combine(_dir, "lib")], RepoPaths.Root, TimeSpan.FromMinutes(20));
        Assert.True(publish.ExitCode == 0, publish.ToString());
        string path = publish.Stdout.Trim();
        Assert.Equal(Path.Combine(_dir, "lib", "libvmstate.so"), path);
        return path;
    }
}
