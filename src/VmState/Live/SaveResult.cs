namespace VmState.Live;

/// <summary>
/// What a whole-state save did: <see cref="QemuMonitor.SaveStateToFileAsync"/> (to a file) or
/// <see cref="QemuMonitor.CaptureStateAsync"/> (streamed into this process).
/// </summary>
/// <param name="Mode">How the state was kept consistent: the guest kept running (a background snapshot), was paused
/// for the save, or was not running.</param>
/// <param name="Bytes">Size of the stream written.</param>
/// <param name="DowntimeMilliseconds">QEMU's reported downtime, when it reports one.</param>
/// <param name="Elapsed">Wall time of the whole save.</param>
/// <param name="FallbackReason">Why a background snapshot was asked for but not possible, or null.</param>
public sealed record SaveResult(SaveMode Mode, long Bytes, double? DowntimeMilliseconds, TimeSpan Elapsed, string? FallbackReason)
{
    /// <summary>
    /// How long the guest was stopped, measured between QEMU's own STOP and RESUME event timestamps (for a background
    /// snapshot, the moment QEMU saves the devices and starts write protection; for a paused save, the whole save);
    /// null when the guest was not running or the events did not arrive.
    /// </summary>
    public TimeSpan? GuestPause { get; init; }
}
