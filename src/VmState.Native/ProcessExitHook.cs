using System.Runtime.InteropServices;

namespace VmState.Native;

/// <summary>
/// Resumes the guests the handles paused when the host process exits without closing them. A .NET program gets this
/// from <see cref="VmPause"/> (AppDomain.ProcessExit), but a Native AOT library inside a C or Python process never
/// sees that event: the host's <c>exit</c> does not go through the .NET runtime. An exit handler registered with the C library does.
/// Signals need nothing here: <see cref="VmPause"/>'s signal registrations work in a library too.
/// </summary>
internal static unsafe partial class ProcessExitHook
{
    private static int s_registered;

    /// <summary>Registers the exit handler, once per process (on the first pause).</summary>
    public static void Ensure()
    {
        if (Interlocked.Exchange(ref s_registered, 1) == 0)
        {
            _ = CxaAtExit(&OnExit, null, null);
        }
    }

    [UnmanagedCallersOnly]
    private static void OnExit(void* argument)
    {
        try
        {
            HandleTable.ResumeAll();
        }
        catch (Exception)
        {
            // Nothing can be reported from an exit handler; each pause already keeps its own resume failure.
        }
    }

    // atexit itself is not exported by glibc's libc.so.6 (it lives in libc_nonshared.a and calls this). With no DSO
    // handle the function is called at normal process termination (exit, or return from main), as with atexit
    // (Itanium C++ ABI §3.3.5.3; glibc stdlib/cxa_atexit.c).
    [LibraryImport("libc", EntryPoint = "__cxa_atexit")]
    private static partial int CxaAtExit(delegate* unmanaged<void*, void> function, void* argument, void* dsoHandle);
}
