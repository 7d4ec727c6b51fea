namespace VmState.Replay;

/// <summary>Which side of QEMU's record/replay a command line is for (<c>-icount rr=record|replay</c>).</summary>
public enum ReplayMode
{
    /// <summary>Run the guest and write the log of its non-deterministic inputs.</summary>
    Record,

    /// <summary>Re-execute the guest from the log.</summary>
    Replay,
}
