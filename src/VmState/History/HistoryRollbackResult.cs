namespace VmState.History;

/// <summary>What <see cref="HistoryRollback.RollbackAsync"/> did.</summary>
/// <param name="Capture">The capture the VM was taken back to.</param>
/// <param name="StateBytes">The size of the VM state QEMU loaded.</param>
/// <param name="Prepare">Time to write the capture as an internal snapshot of a temporary qcow2 image (the guest keeps running meanwhile).</param>
/// <param name="Load">Time QEMU took to load it: the guest is stopped for this long.</param>
/// <param name="Running">The VM runs after the load (it did before).</param>
public sealed record HistoryRollbackResult(HistoryCapture Capture, long StateBytes, TimeSpan Prepare, TimeSpan Load, bool Running);
