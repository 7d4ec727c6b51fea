using System.Runtime.InteropServices;
using System.Text;
using VmState.IO;
using VmState.Linux;
using VmState.Live;

namespace VmState.Native;

/// <summary>
/// Errors across the C boundary: an exception becomes a <see cref="VmStateStatus"/> and a thread-local UTF-8 message
/// (<c>vmstate_last_error</c>), so no exception ever reaches the caller's stack, where it would end the process.
/// </summary>
internal static unsafe class NativeErrors
{
    /// <summary>Returned by <c>vmstate_last_error</c> before any call on the thread has failed: "" (never freed).</summary>
    private static readonly byte* s_empty = AllocateUtf8(string.Empty);

    // One message per thread, as errno: native memory, so the pointer handed out stays valid until the next failure.
    [ThreadStatic]
    private static byte* t_message;

    /// <summary>The current thread's last message, or "".</summary>
    public static byte* LastMessage => t_message != null ? t_message : s_empty;

    /// <summary>Records <paramref name="message"/> as the thread's last error and returns <paramref name="status"/>.</summary>
    public static int Fail(VmStateStatus status, string message)
    {
        byte* old = t_message;
        t_message = AllocateUtf8(message);
        NativeMemory.Free(old);
        return (int)status;
    }

    /// <summary>Records <paramref name="exception"/> as the thread's last error and returns its status.</summary>
    public static int Fail(Exception exception)
    {
        VmStateStatus status = StatusOf(exception);
        // The message of a typed error is complete (offset, structure, what was expected); anything else is a bug,
        // and its type is the first thing a bug report needs.
        string message = status == VmStateStatus.Internal ? $"{exception.GetType().FullName}: {exception.Message}" : exception.Message;
        return Fail(status, message);
    }

    /// <summary>The status for an exception the library (or the .NET runtime under it) threw.</summary>
    public static VmStateStatus StatusOf(Exception exception) => exception switch
    {
        VmStateFormatException => VmStateStatus.Format,
        KernelDataException => VmStateStatus.GuestData,
        VmStateNotFoundException => VmStateStatus.NotFound,
        LiveVmGoneException => VmStateStatus.VmGone,
        VmStateException => VmStateStatus.Data,
        QmpException => VmStateStatus.Qmp,
        TimeoutException or OperationCanceledException => VmStateStatus.Timeout,
        IOException or UnauthorizedAccessException => VmStateStatus.IO,
        ArgumentException => VmStateStatus.InvalidArgument,
        InvalidOperationException => VmStateStatus.InvalidState,
        _ => VmStateStatus.Internal,
    };

    /// <summary>A NUL-terminated UTF-8 copy of <paramref name="text"/> in native memory (free with NativeMemory.Free).</summary>
    public static byte* AllocateUtf8(string text)
    {
        int length = Encoding.UTF8.GetByteCount(text);
        byte* p = (byte*)NativeMemory.Alloc((nuint)length + 1);
        Encoding.UTF8.GetBytes(text, new Span<byte>(p, length));
        p[length] = 0;
        return p;
    }
}
