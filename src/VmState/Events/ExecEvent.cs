namespace VmState.Events;

/// <summary>
/// One program started in the guest (a successful <c>execve</c> or <c>execveat</c>, or an exec by the kernel itself),
/// seen when the kernel sets the new program up, past the point of no return: the task, its parent and user, the
/// file and the argument list as the new program receives them. Guest bytes are kept as bytes (see
/// <see cref="TracePrintSpec.Escape"/> to show them).
/// </summary>
public sealed class ExecEvent
{
    /// <summary>
    /// The breakpoint hit behind the event: time, vCPU, registers, and the task: pid, tgid, and its comm, already the
    /// new program's (the last component of the file name, at most 15 bytes: <c>begin_new_exec</c> sets it before
    /// <c>setup_new_exec</c> runs, Linux 5.10–6.12).
    /// </summary>
    public required BreakpointHit Hit { get; init; }

    /// <summary>The pid of the task's parent (<c>real_parent->tgid</c>, what <c>getppid</c> returns), or null when unreadable.</summary>
    public int? Ppid { get; init; }

    /// <summary>The task's real user id (<c>cred->uid</c>, after the exec's set-user-ID change), or null when unreadable.</summary>
    public uint? Uid { get; init; }

    /// <summary>The file name as given to exec (<c>bprm->filename</c>; <c>/dev/fd/N…</c> for an exec of a file descriptor), at most <see cref="ExecTracer.MaxFilename"/> bytes.</summary>
    public required byte[] Filename { get; init; }

    /// <summary>The arguments the program receives, argv[0] first (for a script: the interpreter's command line).</summary>
    public required IReadOnlyList<byte[]> Argv { get; init; }

    /// <summary>The number of arguments the kernel counted (<c>bprm->argc</c>); more than <see cref="Argv"/> holds when it was cut.</summary>
    public int Argc { get; init; }

    /// <summary>True when <see cref="Argv"/> was cut at <see cref="ExecTracer.MaxArgs"/> arguments or <see cref="ExecTracer.MaxArgBytes"/> bytes, or at unreadable memory.</summary>
    public bool ArgvTruncated { get; init; }

    /// <summary>What could not be read (the parent, the user, the arguments), or null.</summary>
    public string? Problem { get; init; }
}
