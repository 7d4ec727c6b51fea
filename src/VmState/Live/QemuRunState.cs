namespace VmState.Live;

/// <summary>
/// QEMU's run state, as <c>query-status</c> reports it (QEMU 7.2 <c>qapi/run-state.json</c>, <c>RunState</c>).
/// </summary>
public enum QemuRunState
{
    /// <summary>A status this version of VmState does not know (a newer QEMU's).</summary>
    Unknown,

    /// <summary>"debug": stopped by a debugger (gdbstub).</summary>
    Debug,

    /// <summary>"inmigrate": waiting for an incoming migration.</summary>
    InMigrate,

    /// <summary>"internal-error": stopped by an internal error (e.g. a KVM failure).</summary>
    InternalError,

    /// <summary>"io-error": stopped by an I/O error on a disk (werror/rerror=stop).</summary>
    IOError,

    /// <summary>"paused": stopped by a stop command.</summary>
    Paused,

    /// <summary>"postmigrate": stopped after an outgoing migration completed.</summary>
    PostMigrate,

    /// <summary>"prelaunch": started with -S, not run yet.</summary>
    Prelaunch,

    /// <summary>"finish-migrate": stopped to finish an outgoing migration.</summary>
    FinishMigrate,

    /// <summary>"restore-vm": loading a snapshot (loadvm).</summary>
    RestoreVm,

    /// <summary>"running": the guest runs.</summary>
    Running,

    /// <summary>"save-vm": saving a snapshot (savevm).</summary>
    SaveVm,

    /// <summary>"shutdown": the guest shut down (with -no-shutdown).</summary>
    Shutdown,

    /// <summary>"suspended": the guest is suspended (ACPI S3).</summary>
    Suspended,

    /// <summary>"watchdog": stopped by the watchdog (action pause).</summary>
    Watchdog,

    /// <summary>"guest-panicked": the guest panicked (pvpanic, action pause).</summary>
    GuestPanicked,

    /// <summary>"colo": in COLO fault-tolerance mode.</summary>
    Colo,
}
