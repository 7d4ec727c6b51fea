using VmState.IO;
using VmState.Linux;
using VmState.Live;

namespace VmState.Cli.Web;

/// <summary>
/// How an exception reaches a client: a status and a one-line message, never a stack trace (the server's
/// exception handler and every source that fails to open use it).
/// </summary>
internal static class WebErrors
{
    /// <summary>The HTTP status and message for <paramref name="e"/>.</summary>
    public static (int Status, string Message) Classify(Exception e) => e switch
    {
        WebRequestException w => (w.Status, w.Message),
        VmStateNotFoundException n => (404, n.Message),
        VmState.Events.GdbStubBusyException b => (409, $"QEMU's gdbstub is in use by another client: {b.Message}"),
        LiveVmGoneException g => (503, $"the running VM is gone: {g.Message}"),
        VmStateFormatException or KernelDataException or InvalidEditException => (422, Describe(e)),
        VmStateException => (422, Describe(e)),
        QmpException q => (502, $"QEMU refused: {q.Message}"),
        ArgumentException => (400, Describe(e)),
        OperationCanceledException => (503, "cancelled"),
        IOException => (500, Describe(e)),
        _ => (500, $"internal error ({e.GetType().Name})"),
    };

    /// <summary>A one-line description of <paramref name="e"/> as the CLI would print it (no stack).</summary>
    public static string Describe(Exception e) => e switch
    {
        VmStateFormatException => $"invalid input: {e.Message}",
        KernelDataException => $"guest kernel: {e.Message}",
        FileNotFoundException or DirectoryNotFoundException or VmStateException => e.Message,
        ArgumentException a when a.ParamName is not null => a.Message.Replace($" (Parameter '{a.ParamName}')", string.Empty, StringComparison.Ordinal),
        ArgumentException => e.Message,
        UnauthorizedAccessException => $"permission denied: {e.Message}",
        IOException => $"I/O error: {e.Message}",
        QmpException or TimeoutException => e.Message,
        _ => $"internal error ({e.GetType().Name}): {e.Message}",
    };
}
