using System.Runtime.InteropServices;

namespace VmState.IO;

/// <summary>
/// What a process that must outlive the terminal it was started from needs (a mount that goes on in the background,
/// the capture guard): its own session, so that Ctrl-C and the hang-up of a closed terminal no longer reach it.
/// </summary>
public static partial class ProcessSession
{
    /// <summary>
    /// Starts a new session with this process as its leader (<c>setsid(2)</c>): no controlling terminal, its own
    /// process group. Fails when the process already leads a process group (a child started by another program never does).
    /// </summary>
    /// <exception cref="IOException">setsid failed (with errno).</exception>
    public static void Detach()
    {
        if (setsid() < 0)
        {
            throw new IOException($"setsid failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setsid();
}
