namespace VmState.Live;

/// <summary>What <see cref="QemuMonitor.SaveStateToFileAsync"/> did.</summary>
/// <param name="Mode">How the state was kept consistent: the guest kept running (a background snapshot), was paused
/// for the save, or was not running.</param>
/// <param name="Bytes">Size of the stream written.</param>
/// <param name="DowntimeMilliseconds">QEMU's reported downtime, when it reports one.</param>
/// <param name="Elapsed">Wall time of the whole save.</param>
/// <param name="FallbackReason">Why a background snapshot was asked for but not possible, or null.</param>
public sealed record SaveResult(SaveMode Mode, long Bytes, double? DowntimeMilliseconds, TimeSpan Elapsed, string? FallbackReason);
