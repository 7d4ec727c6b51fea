namespace VmState;

/// <summary>
/// A live VM went away while it was being used: QEMU exited (its memory can no longer be read), or its QMP socket
/// closed, before or during a command. Every later use of that connection or memory fails with this too; the caller
/// has to attach again.
/// </summary>
public sealed class LiveVmGoneException : VmStateException
{
    /// <summary>Creates the exception for the QMP connection on <paramref name="socketPath"/>.</summary>
    public LiveVmGoneException(string socketPath, string? command, string message, Exception? inner = null)
        : base(message, inner)
    {
        ArgumentNullException.ThrowIfNull(socketPath);
        SocketPath = socketPath;
        Command = command;
    }

    /// <summary>Creates the exception for QEMU process <paramref name="processId"/>, found gone when its memory was accessed.</summary>
    public LiveVmGoneException(int processId, string message)
        : base(message)
    {
        ProcessId = processId;
    }

    /// <summary>The QMP socket whose connection closed, or null when the loss was seen through process memory.</summary>
    public string? SocketPath { get; }

    /// <summary>The command that was being sent or waited for, or null when none was (e.g. waiting for an event).</summary>
    public string? Command { get; }

    /// <summary>The QEMU process found gone, or null when the loss was seen on the QMP socket.</summary>
    public int? ProcessId { get; }
}
