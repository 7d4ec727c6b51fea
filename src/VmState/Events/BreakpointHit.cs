namespace VmState.Events;

/// <summary>
/// One breakpoint hit, seen while the whole VM is stopped (QEMU's gdbstub is all-stop): the vCPU that hit, its
/// registers, the symbol at RIP and the task that was running on that vCPU, read from live guest memory.
/// </summary>
public sealed class BreakpointHit
{
    /// <summary>Hit number, from 1.</summary>
    public required long Sequence { get; init; }

    /// <summary>When the stop reply arrived.</summary>
    public required DateTimeOffset Time { get; init; }

    /// <summary>The breakpoint.</summary>
    public required TraceBreakpoint Breakpoint { get; init; }

    /// <summary>The vCPU index (0-based).</summary>
    public required int Vcpu { get; init; }

    /// <summary>The vCPU's registers at the hit.</summary>
    public required X86GdbRegisters Registers { get; init; }

    /// <summary>The kernel symbol and offset at RIP (<c>name+0x0</c>), or null.</summary>
    public string? Symbol { get; init; }

    /// <summary>The pid of the task running on the vCPU, or null when it could not be read.</summary>
    public int? Pid { get; init; }

    /// <summary>The task's <c>comm</c>, or null when it could not be read.</summary>
    public string? Comm { get; init; }

    /// <summary>Why the task could not be read, when it could not.</summary>
    public string? TaskProblem { get; init; }
}
