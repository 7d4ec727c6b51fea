namespace VmState.Live;

/// <summary>QEMU answered a QMP command with an error (docs/interop/qmp-spec: <c>{"error": {"class", "desc"}}</c>).</summary>
public sealed class QmpException : Exception
{
    /// <summary>Creates the exception.</summary>
    public QmpException(string command, string errorClass, string description)
        : base($"QEMU refused {command}: {description} ({errorClass})")
    {
        Command = command;
        ErrorClass = errorClass;
        Description = description;
    }

    /// <summary>The command that failed.</summary>
    public string Command { get; }

    /// <summary>QEMU's error class, e.g. "GenericError", "CommandNotFound", "DeviceNotFound".</summary>
    public string ErrorClass { get; }

    /// <summary>QEMU's human-readable description.</summary>
    public string Description { get; }
}
