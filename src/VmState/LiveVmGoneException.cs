namespace VmState;

/// <summary>
/// A live VM went away while it was being used: QEMU exited, or its QMP socket closed, before or during a command.
/// Every pending and later command on that connection fails with this; the caller has to attach again.
/// </summary>
public sealed class LiveVmGoneException : VmStateException
{
    /// <summary>Creates the exception for the connection on <paramref name="socketPath"/>.</summary>
    public LiveVmGoneException(string socketPath, string? command, string message, Exception? inner = null)
        : base(message, inner)
    {
        ArgumentNullException.ThrowIfNull(socketPath);
        SocketPath = socketPath;
        Command = command;
    }

    /// <summary>The QMP socket whose connection closed.</summary>
    public string SocketPath { get; }

    /// <summary>The command that was being sent or waited for, or null when none was (e.g. waiting for an event).</summary>
    public string? Command { get; }
}
