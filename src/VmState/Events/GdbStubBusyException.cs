namespace VmState.Events;

/// <summary>QEMU's gdbstub serves one client at a time, and another one (a gdb, another trace) holds it.</summary>
public sealed class GdbStubBusyException : VmStateException
{
    /// <summary>Creates the exception for the stub at <paramref name="endpoint"/>.</summary>
    public GdbStubBusyException(string endpoint)
        : base($"the gdbstub at {endpoint} is in use by another client (a gdb session or another trace): QEMU serves one gdb client at a time; detach it first")
    {
        Endpoint = endpoint;
    }

    /// <summary>host:port of the stub.</summary>
    public string Endpoint { get; }
}
