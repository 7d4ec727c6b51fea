namespace VmState.Cli.Web;

/// <summary>
/// A request the server refuses before it touches a source: a malformed or out-of-range parameter, an unknown
/// source, a write that was not allowed. <see cref="Status"/> is the HTTP status; the message is shown to the client
/// as it is (it names the parameter and what was expected, never a path or a stack).
/// </summary>
internal sealed class WebRequestException(int status, string message) : Exception(message)
{
    /// <summary>The HTTP status code (4xx).</summary>
    public int Status { get; } = status;
}
