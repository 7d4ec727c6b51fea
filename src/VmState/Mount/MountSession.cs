using System.Runtime.InteropServices;

namespace VmState.Mount;

/// <summary>
/// What a mount that goes on in the background needs of the process it runs in: its own session, so that the
/// terminal it was started from (Ctrl-C, hang-up when the terminal closes) no longer reaches it.
/// </summary>
public static partial class MountSession
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
