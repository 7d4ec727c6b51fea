using System.Runtime.InteropServices;

namespace VmState.Native;

/// <summary><c>vmstate_open_options</c> (include/vmstate.h): the same fields in the same order, natural alignment.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct NativeOpenOptions
{
    public const uint AllowRaw = 0x1;
    public const uint NoCache = 0x2;
    public const uint KnownFlags = AllowRaw | NoCache;

    public uint Size;
    public uint Flags;
    public nint Snapshot;
    public nint SystemMap;
    public nint Btf;
}

/// <summary><c>vmstate_attach_options</c> (include/vmstate.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct NativeAttachOptions
{
    public const uint Pause = 0x1;
    public const uint KnownFlags = Pause;

    public uint Size;
    public uint Flags;
    public uint TimeoutMs;
    public uint Reserved;
    public nint SystemMap;
    public nint Btf;
}
