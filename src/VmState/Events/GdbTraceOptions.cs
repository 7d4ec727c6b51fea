namespace VmState.Events;

/// <summary>How a <see cref="GdbTraceSession"/> reaches QEMU's gdbstub and protects the VM.</summary>
public sealed record GdbTraceOptions
{
    /// <summary>
    /// The stub to use, host and port. Null: the one on QEMU's command line (<c>-gdb tcp:…</c>, <c>-s</c>) if any,
    /// else one started for the session on a free loopback port (HMP <c>gdbserver</c>) and stopped at its end.
    /// </summary>
    public (string Host, int Port)? Stub { get; init; }

    /// <summary>
    /// The command (program and arguments) of a guard process that cleans up when this process dies without doing
    /// so itself (SIGKILL): see <see cref="TraceGuard"/>. The session appends the guard arguments. Null: no guard, and
    /// a killed process leaves its breakpoints in the guest (QEMU 7.2 keeps them when the gdb connection closes).
    /// </summary>
    public IReadOnlyList<string>? GuardCommand { get; init; }

    /// <summary>How long to wait for an answer to a request; also how long a busy stub has to answer the first one.</summary>
    public TimeSpan ReplyTimeout { get; init; } = TimeSpan.FromSeconds(5);
}
