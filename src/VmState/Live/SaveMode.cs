namespace VmState.Live;

/// <summary>How a whole-state save (<see cref="QemuMonitor.SaveStateToFileAsync"/>, <see cref="QemuMonitor.CaptureStateAsync"/>) kept the state consistent.</summary>
public enum SaveMode
{
    /// <summary>QEMU's background snapshot: the guest kept running, RAM was saved copy-on-write as it was at the start.</summary>
    BackgroundSnapshot,

    /// <summary>The guest was stopped, saved and resumed.</summary>
    Pause,

    /// <summary>The guest was not running; it was saved as it was and left so.</summary>
    AlreadyPaused,
}
