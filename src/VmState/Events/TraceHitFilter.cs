namespace VmState.Events;

/// <summary>
/// Which hits reach a handler, evaluated in this process while the VM is stopped (hits that do not match are stepped
/// over and not counted). Every condition given must hold; null conditions are not checked.
/// </summary>
public sealed record TraceHitFilter
{
    /// <summary>The pid (thread id, as <c>task_struct.pid</c>) or the thread-group id (the process's pid) of the current task.</summary>
    public int? Pid { get; init; }

    /// <summary>The current task's <c>comm</c> (at most 15 bytes), compared exactly.</summary>
    public string? Comm { get; init; }

    /// <summary>
    /// The page-table root: compared with the vCPU's CR3 after both lose their low 13 bits (the PCID in bits 0–11 and,
    /// with page-table isolation, bit 12 that selects the user copy of the page tables) and bit 63 (no-flush), so a
    /// process's CR3 matches in kernel and user mode alike.
    /// </summary>
    public ulong? Cr3 { get; init; }

    /// <summary>The vCPU index (0-based).</summary>
    public int? Vcpu { get; init; }

    /// <summary>True when no condition is set.</summary>
    public bool IsEmpty => Pid is null && Comm is null && Cr3 is null && Vcpu is null;

    /// <summary>CR3 without PCID, the PTI user bit and the no-flush bit: the physical page-table root.</summary>
    public static ulong PageTableRoot(ulong cr3) => cr3 & 0x000F_FFFF_FFFF_E000UL;

    /// <summary>True when <paramref name="hit"/> meets every condition.</summary>
    public bool Matches(BreakpointHit hit)
    {
        ArgumentNullException.ThrowIfNull(hit);
        return (Vcpu is not int v || hit.Vcpu == v)
            && (Cr3 is not ulong c || PageTableRoot(hit.Registers.Cr3) == PageTableRoot(c))
            && (Pid is not int p || hit.Pid == p || hit.Tgid == p)
            && (Comm is not string n || string.Equals(hit.Comm, n, StringComparison.Ordinal));
    }
}
