using System.Collections.Concurrent;

namespace VmState.Native;

/// <summary>
/// The handles given to C: numbers looked up in a table rather than pointers to managed objects, so a handle that
/// was closed, closed twice or never opened is an error code, not a crash (a freed GCHandle cannot be recognised).
/// </summary>
internal static class HandleTable
{
    private static readonly ConcurrentDictionary<nint, NativeSession> s_sessions = new();

    // Handles count up from a value no small integer or typical pointer has, so a stray int is not a live handle.
    private static long s_next = 0x7654_0000;

    /// <summary>Registers a session and returns its handle.</summary>
    public static nint Add(NativeSession session)
    {
        nint handle = (nint)Interlocked.Increment(ref s_next);
        s_sessions[handle] = session;
        return handle;
    }

    /// <summary>The session of <paramref name="handle"/>, or null if it is not open.</summary>
    public static NativeSession? Find(nint handle) => s_sessions.TryGetValue(handle, out NativeSession? s) ? s : null;

    /// <summary>Ends every pause the open handles hold (at process exit; <see cref="VmPause"/> disposal never throws).</summary>
    public static void ResumeAll()
    {
        foreach (NativeSession session in s_sessions.Values)
        {
            session.Pause?.Dispose();
        }
    }

    /// <summary>Removes <paramref name="handle"/> and returns its session, or null if it was not open.</summary>
    public static NativeSession? Remove(nint handle) => s_sessions.TryRemove(handle, out NativeSession? s) ? s : null;
}
