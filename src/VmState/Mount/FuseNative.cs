using System.Runtime.InteropServices;

namespace VmState.Mount;

/// <summary>
/// The parts of libfuse 3 (Debian 12: 3.14, <c>libfuse3.so.3</c>) the filesystem view uses, bound by hand (no .NET
/// binding is packaged): the high-level path API through <c>fuse_new</c> (the default <c>@@FUSE_3.1</c> version),
/// <c>fuse_mount</c>, <c>fuse_loop_mt</c> (<c>@@FUSE_3.12</c>, with a loop config), <c>fuse_exit</c>,
/// <c>fuse_unmount</c> and <c>fuse_destroy</c>. Layouts are those of x86-64 Linux with 64-bit <c>off_t</c>.
/// </summary>
internal static unsafe partial class FuseNative
{
    private const string Library = "libfuse3.so.3";

    /// <summary>The number of function pointers in <c>struct fuse_operations</c> (3.14): 42, 336 bytes.</summary>
    public const int OperationCount = 42;

    // Offsets (in pointers) of the operations this view implements, in the order of fuse.h.
    public const int OpGetattr = 0;
    public const int OpReadlink = 1;
    public const int OpTruncate = 11;
    public const int OpOpen = 12;
    public const int OpRead = 13;
    public const int OpWrite = 14;
    public const int OpStatfs = 15;
    public const int OpRelease = 17;
    public const int OpOpendir = 23;
    public const int OpReaddir = 24;
    public const int OpReleasedir = 25;
    public const int OpAccess = 29;

    // errno values (Linux).
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EIO = 5;
    public const int EACCES = 13;
    public const int ENOTDIR = 20;
    public const int EISDIR = 21;
    public const int EINVAL = 22;
    public const int EROFS = 30;

    // st_mode bits.
    public const uint SIfDir = 0x4000;
    public const uint SIfReg = 0x8000;
    public const uint SIfLnk = 0xA000;

    // fuse_file_info's bit-field word (offset 4).
    public const uint DirectIo = 0x2;
    public const uint KeepCache = 0x4;

    /// <summary><c>struct stat</c> of glibc on x86-64 (144 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Stat
    {
        public ulong Dev;
        public ulong Ino;
        public ulong Nlink;
        public uint Mode;
        public uint Uid;
        public uint Gid;
        public int Pad0;
        public ulong Rdev;
        public long Size;
        public long Blksize;
        public long Blocks;
        public long AtimeSec;
        public long AtimeNsec;
        public long MtimeSec;
        public long MtimeNsec;
        public long CtimeSec;
        public long CtimeNsec;
        public long Reserved0;
        public long Reserved1;
        public long Reserved2;
    }

    /// <summary><c>struct fuse_file_info</c> (40 bytes): flags, the bit-field word, the file handle.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct FileInfo
    {
        public int Flags;
        public uint Bits;
        public uint Padding;
        public uint Padding2;
        public ulong Fh;
        public ulong LockOwner;
        public uint PollEvents;
        public uint Padding3;
    }

    /// <summary><c>struct fuse_args</c>: argc, argv, allocated.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Args
    {
        public int Argc;
        public nint Argv;
        public int Allocated;
    }

    /// <summary><c>struct statvfs</c> of glibc on x86-64 (112 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct StatVfs
    {
        public ulong Bsize;
        public ulong Frsize;
        public ulong Blocks;
        public ulong Bfree;
        public ulong Bavail;
        public ulong Files;
        public ulong Ffree;
        public ulong Favail;
        public ulong Fsid;
        public ulong Flag;
        public ulong Namemax;
        public int Spare0;
        public int Spare1;
        public int Spare2;
        public int Spare3;
        public int Spare4;
        public int Spare5;
    }

    [LibraryImport(Library, EntryPoint = "fuse_new")]
    public static partial nint New(Args* args, nint* operations, nuint operationsSize, nint privateData);

    [LibraryImport(Library, EntryPoint = "fuse_mount", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mount(nint fuse, string mountpoint);

    [LibraryImport(Library, EntryPoint = "fuse_loop_mt")]
    public static partial int LoopMt(nint fuse, nint config);

    [LibraryImport(Library, EntryPoint = "fuse_loop_cfg_create")]
    public static partial nint LoopConfigCreate();

    [LibraryImport(Library, EntryPoint = "fuse_loop_cfg_destroy")]
    public static partial void LoopConfigDestroy(nint config);

    [LibraryImport(Library, EntryPoint = "fuse_loop_cfg_set_max_threads")]
    public static partial void LoopConfigSetMaxThreads(nint config, uint value);

    [LibraryImport(Library, EntryPoint = "fuse_exit")]
    public static partial void Exit(nint fuse);

    [LibraryImport(Library, EntryPoint = "fuse_unmount")]
    public static partial void Unmount(nint fuse);

    [LibraryImport(Library, EntryPoint = "fuse_destroy")]
    public static partial void Destroy(nint fuse);

    /// <summary><c>struct fuse_context*</c>: fuse (8), uid, gid, pid (4 each), padding, <c>private_data</c> at 24.</summary>
    [LibraryImport(Library, EntryPoint = "fuse_get_context")]
    public static partial nint GetContext();

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Umount2(string target, int flags);

    /// <summary><c>MNT_DETACH</c>: lazy unmount (the mount goes away once no one uses it).</summary>
    public const int MntDetach = 2;
}
