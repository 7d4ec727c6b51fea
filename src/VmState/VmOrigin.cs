namespace VmState;

/// <summary>Where a <see cref="Vm"/> came from.</summary>
/// <param name="Kind">The kind of input.</param>
/// <param name="Path">The snapshot file, or the QMP socket of a running QEMU.</param>
/// <param name="Qcow2SnapshotId">For <see cref="VmOriginKind.Qcow2Snapshot"/>: the id of the internal snapshot opened.</param>
public sealed record VmOrigin(VmOriginKind Kind, string Path, string? Qcow2SnapshotId = null);
