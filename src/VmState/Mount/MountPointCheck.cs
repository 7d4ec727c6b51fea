namespace VmState.Mount;

/// <summary>What a mount point must be: an existing directory that is not already a mount point and not a dead FUSE mount.</summary>
public static class MountPointCheck
{
    /// <summary>The filesystem type a vmstate mount has in /proc/self/mountinfo (FUSE subtype "vmstate").</summary>
    public const string VmStateType = "fuse.vmstate";

    /// <summary>Throws an <see cref="IOException"/> that says what is wrong with <paramref name="mountPoint"/> and what to do.</summary>
    public static void Require(string mountPoint)
    {
        if (FileSystemType(mountPoint) is string type)
        {
            // A FUSE mount whose server was killed answers every stat with ENOTCONN.
            throw new IOException(type == VmStateType && !Directory.Exists(mountPoint)
                ? $"{mountPoint} is a vmstate mount whose process is gone (killed?); unmount it first: vmstate umount {mountPoint}"
                : $"{mountPoint} is already a mount point ({type}); unmount it or choose another directory");
        }

        if (!Directory.Exists(mountPoint))
        {
            throw new IOException(File.Exists(mountPoint)
                ? $"{mountPoint} is a file, not a directory to mount on"
                : $"{mountPoint} does not exist: create the directory to mount on first");
        }
    }

    /// <summary>True when <paramref name="path"/> is listed as a mount point in /proc/self/mountinfo.</summary>
    public static bool IsMountPoint(string path) => FileSystemType(path) is not null;

    /// <summary>
    /// The filesystem type of the (last) mount at <paramref name="path"/> in /proc/self/mountinfo (e.g.
    /// <see cref="VmStateType"/>), or null when it is not a mount point.
    /// </summary>
    public static string? FileSystemType(string path)
    {
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        string? type = null;
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            // "36 35 98:0 /mnt1 /mnt/parent rw,... - type source opts": the fifth field is the mount point, with
            // space, tab, newline and backslash written as octal escapes; the type follows the " - " separator.
            string[] f = line.Split(' ');
            int dash = Array.IndexOf(f, "-");
            if (f.Length > 4 && dash > 4 && dash + 1 < f.Length && Unescape(f[4]) == full)
            {
                type = f[dash + 1];
            }
        }

        return type;
    }

    /// <summary>Unmounts <paramref name="path"/> (with <paramref name="lazy"/>, detached); false with the reason on failure.</summary>
    public static bool Unmount(string path, bool lazy, out string why)
    {
        if (FuseNative.Umount2(path, lazy ? FuseNative.MntDetach : 0) == 0)
        {
            why = string.Empty;
            return true;
        }

        int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
        why = errno switch
        {
            16 => "busy (a process has a file open or its working directory in it); close them, or use --lazy",
            1 => "not permitted (unmounting needs the user who mounted it to be root here; try fusermount3 -u)",
            _ => $"umount failed (errno {errno})",
        };
        return false;
    }

    private static string Unescape(string s) =>
        s.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal)
         .Replace("\\012", "\n", StringComparison.Ordinal).Replace("\\134", "\\", StringComparison.Ordinal);
}
