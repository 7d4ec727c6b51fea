using System.Runtime.InteropServices;

namespace VmState.IO;

/// <summary>
/// What makes two paths the same file: the device and inode numbers <c>stat(2)</c> reports. Paths are no good for
/// that: a hard link, a symlink, <c>..</c> or a bind mount give one file many names, and a tool that must never
/// replace its input has to compare the file, not the name.
/// </summary>
/// <param name="Device">st_dev: the file system the file lives on.</param>
/// <param name="Inode">st_ino: the file within that file system.</param>
public readonly partial record struct FileIdentity(ulong Device, ulong Inode)
{
    /// <summary>
    /// The identity of the file <paramref name="path"/> names, following symlinks (so a link to a file has that file's
    /// identity). False when the file does not exist or cannot be examined, or on a system other than Linux.
    /// </summary>
    public static bool TryGet(string path, out FileIdentity identity)
    {
        identity = default;
        if (!OperatingSystem.IsLinux() || string.IsNullOrEmpty(path) || path.Contains('\0', StringComparison.Ordinal))
        {
            return false;
        }

        // struct stat is 144 bytes on x86-64 and 128 on arm64; both start with st_dev and st_ino as 64-bit fields
        // (glibc sysdeps/unix/sysv/linux/x86_64/bits/struct_stat.h, asm-generic/stat.h). 256 bytes leave room.
        Span<byte> buffer = stackalloc byte[256];
        unsafe
        {
            fixed (byte* p = buffer)
            {
                if (Stat(path, p) != 0)
                {
                    return false;
                }
            }
        }

        identity = new FileIdentity(MemoryMarshal.Read<ulong>(buffer), MemoryMarshal.Read<ulong>(buffer[8..]));
        return true;
    }

    /// <inheritdoc/>
    public override string ToString() => $"device {Device:x}, inode {Inode}";

    // glibc exports stat itself since 2.33 (before, only __xstat); Debian 12 has 2.36.
    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static unsafe partial int Stat(string path, byte* buffer);
}
