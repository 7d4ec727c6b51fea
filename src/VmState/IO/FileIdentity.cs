using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VmState.IO;

/// <summary>
/// What makes two paths the same file: the device and inode numbers <c>stat(2)</c> reports. Path strings are not
/// enough: a symlink, a hard link, <c>./x</c> and <c>dir/../x</c> all name one file under different strings.
/// </summary>
/// <param name="Device">st_dev.</param>
/// <param name="Inode">st_ino.</param>
public readonly partial record struct FileIdentity(ulong Device, ulong Inode)
{
    /// <summary>
    /// The identity of the file <paramref name="path"/> names, following symlinks (as opening it would); false when
    /// nothing is there.
    /// </summary>
    public static bool TryGet(string path, out FileIdentity identity)
    {
        identity = default;
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        Span<ulong> buffer = stackalloc ulong[StatBufferWords];
        if (Stat(path, ref MemoryMarshal.GetReference(buffer)) != 0)
        {
            return false;
        }

        identity = FromStat(buffer);
        return true;
    }

    /// <summary>The identity of an open file.</summary>
    public static FileIdentity Of(SafeFileHandle handle)
    {
        Span<ulong> buffer = stackalloc ulong[StatBufferWords];
        if (!OperatingSystem.IsLinux() || FStat((int)handle.DangerousGetHandle(), ref MemoryMarshal.GetReference(buffer)) != 0)
        {
            throw new IOException($"fstat failed: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        return FromStat(buffer);
    }

    /// <inheritdoc />
    public override string ToString() => $"device 0x{Device:x}, inode {Inode}";

    // struct stat begins with st_dev and st_ino (8 bytes each) on every 64-bit Linux ABI (x86-64 and the generic
    // one arm64 uses); the buffer is larger than any struct stat (144 bytes on x86-64, 128 on arm64).
    private const int StatBufferWords = 32;

    private static FileIdentity FromStat(ReadOnlySpan<ulong> buffer) => new(buffer[0], buffer[1]);

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Stat(string path, ref ulong buffer);

    [LibraryImport("libc", EntryPoint = "fstat", SetLastError = true)]
    private static partial int FStat(int fd, ref ulong buffer);
}
