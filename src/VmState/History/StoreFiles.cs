using System.Runtime.InteropServices;

namespace VmState.History;

/// <summary>File operations of the store: owner-only files (0600) in an owner-only directory (0700), atomic replacement, fsync.</summary>
internal static partial class StoreFiles
{
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Opens (creating it 0600 when <paramref name="create"/>) a store file for reading and writing.</summary>
    public static FileStream OpenWrite(string path, bool create)
    {
        var options = new FileStreamOptions
        {
            Mode = create ? System.IO.FileMode.OpenOrCreate : System.IO.FileMode.Open,
            Access = FileAccess.ReadWrite,
            Share = FileShare.Read,
            BufferSize = 0,
        };
        if (!OperatingSystem.IsWindows() && create)
        {
            options.UnixCreateMode = FileMode;
        }

        return new FileStream(path, options);
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> through a temporary file, fsync and rename, then fsyncs the directory.</summary>
    public static void WriteAtomically(string path, ReadOnlySpan<byte> bytes)
    {
        Replace(path, bytes);
        SyncDirectory(Path.GetDirectoryName(path)!);
    }

    /// <summary>
    /// Writes <paramref name="bytes"/> to a temporary file, fsyncs it and renames it over <paramref name="path"/>: once
    /// this returns, readers see the new content (the rename is the commit); fsync the directory to make it durable.
    /// On failure the old file is untouched and the temporary is removed.
    /// </summary>
    public static void Replace(string path, ReadOnlySpan<byte> bytes)
    {
        string dir = Path.GetDirectoryName(path)!;
        string temp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        try
        {
            using (FileStream f = NewFile(temp))
            {
                f.Write(bytes);
                f.Flush(flushToDisk: true);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>Creates a new file, 0600, failing if it exists.</summary>
    public static FileStream NewFile(string path)
    {
        var options = new FileStreamOptions { Mode = System.IO.FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = FileMode;
        }

        return new FileStream(path, options);
    }

    /// <summary>fsync(2) of a directory, so a rename in it is durable.</summary>
    public static void SyncDirectory(string dir)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        // O_RDONLY opens a directory on Linux; its fsync makes the entries (a rename) durable.
        int fd = Open(dir, 0);
        if (fd < 0)
        {
            throw new IOException($"cannot open {dir} to sync it: errno {Marshal.GetLastPInvokeError()}");
        }

        try
        {
            if (Fsync(fd) != 0)
            {
                throw new IOException($"fsync of {dir} failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    /// <summary>
    /// Swaps two directory entries in one step (renameat2 with RENAME_EXCHANGE, Linux 3.15): at every moment each name
    /// refers to one whole tree, the old or the new.
    /// </summary>
    public static void Exchange(string a, string b)
    {
        const int AtFdCwd = -100;
        const uint RenameExchange = 2;
        if (Renameat2(AtFdCwd, a, AtFdCwd, b, RenameExchange) != 0)
        {
            throw new IOException($"cannot exchange {a} and {b} (renameat2 RENAME_EXCHANGE): errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [LibraryImport("libc", EntryPoint = "renameat2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Renameat2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
