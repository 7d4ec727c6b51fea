namespace VmState.IO;

/// <summary>Directories for what holds guest state or sockets: created owner-only (0700); an existing one is left as it is.</summary>
public static class PrivateDirectory
{
    /// <summary>Creates <paramref name="path"/> (and missing parents) owner-only, unless it exists.</summary>
    public static DirectoryInfo Create(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return OperatingSystem.IsWindows()
            ? Directory.CreateDirectory(path)
            : Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }
}
