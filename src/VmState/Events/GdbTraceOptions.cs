namespace VmState.Events;

/// <summary>How a <see cref="GdbTraceSession"/> reaches QEMU's gdbstub and protects the VM.</summary>
public sealed record GdbTraceOptions
{
    /// <summary>
    /// The stub to use, host and port. Null: the one on QEMU's command line (<c>-gdb tcp:…</c>, <c>-s</c>) if any,
    /// else one started for the session (HMP <c>gdbserver</c>, see <see cref="UnixSocketStub"/>) and stopped at its end.
    /// </summary>
    public (string Host, int Port)? Stub { get; init; }

    /// <summary>
    /// True (the default): a stub the session starts listens on a UNIX socket in a new directory that only this user
    /// can enter (mode 0700, removed at the end), so no other local user can connect to it, as anyone on the host can
    /// to a loopback port; when QEMU cannot create the socket there (it runs as another user, or confined), the session
    /// falls back to a free loopback TCP port. False: loopback TCP at once.
    /// </summary>
    public bool UnixSocketStub { get; init; } = true;

    /// <summary>
    /// The command (program and arguments) of a guard process that cleans up when this process dies without doing
    /// so itself (SIGKILL): see <see cref="TraceGuard"/>. The session appends the guard arguments. Null: no guard, and
    /// a killed process leaves its breakpoints in the guest (QEMU 7.2 keeps them when the gdb connection closes).
    /// </summary>
    public IReadOnlyList<string>? GuardCommand { get; init; }

    /// <summary>How long to wait for an answer to a request; also how long a busy stub has to answer the first one.</summary>
    public TimeSpan ReplyTimeout { get; init; } = TimeSpan.FromSeconds(5);
}
