namespace VmState.Replay;

/// <summary>Where one run (a recording or a replay) keeps its files and sockets.</summary>
/// <param name="Log">The replay log (<c>rrfile=</c>): written when recording, read when replaying.</param>
/// <param name="WorkDirectory">The run's own files: drive overlays, the snapshot image, console files of a replay.</param>
/// <param name="ControlQmp">The QMP socket VmState drives the run through.</param>
/// <param name="UserQmp">A second QMP socket for the user's live commands (QEMU serves one client per socket).</param>
public sealed record ReplayRunPaths(string Log, string WorkDirectory, string ControlQmp, string UserQmp)
{
    /// <summary>QEMU's gdbstub on 127.0.0.1 at this port (a replay's reverse debugging), or none.</summary>
    public int? GdbPort { get; init; }

    /// <summary>Start with the vCPUs stopped (<c>-S</c>), to set a replay breakpoint before anything runs.</summary>
    public bool StartPaused { get; init; }

    /// <summary>
    /// A replay that starts from this snapshot of its snapshot image (<c>rrsnapshot=</c>: QEMU loads it while it
    /// starts), or from power-on.
    /// </summary>
    public string? StartSnapshot { get; init; }

    /// <summary>The image that holds snapshots of the run (an orphan qcow2: no guest device uses it).</summary>
    public string SnapshotImage => Path.Combine(WorkDirectory, "snapshots.qcow2");
}
