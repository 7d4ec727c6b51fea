using System.Runtime.InteropServices;

namespace VmState.Live;

/// <summary>Linux system calls used by the live sources (glibc wrappers).</summary>
internal static unsafe partial class NativeMethods
{
    public const int SolSocket = 1;
    public const int SoPeerCred = 17;

    [StructLayout(LayoutKind.Sequential)]
    public struct UCred
    {
        public int Pid;
        public uint Uid;
        public uint Gid;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [LibraryImport("libc", SetLastError = true)]
    public static partial int getsockopt(int socket, int level, int option, UCred* value, uint* length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint process_vm_readv(int pid, IoVec* local, nuint localCount, IoVec* remote, nuint remoteCount, nuint flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint process_vm_writev(int pid, IoVec* local, nuint localCount, IoVec* remote, nuint remoteCount, nuint flags);
}
