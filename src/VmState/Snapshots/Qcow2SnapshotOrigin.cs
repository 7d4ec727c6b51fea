using VmState.Formats.Migration;
using VmState.Machine;

namespace VmState.Snapshots;

/// <summary>
/// The origin of a machine read from an internal snapshot of a qcow2 image: the snapshot's vmstate is a migration
/// stream, and its id lets a writer add an edited snapshot beside it that shares its disk clusters.
/// </summary>
/// <param name="Path">The qcow2 image.</param>
/// <param name="Stream">The parsed vmstate stream.</param>
/// <param name="SnapshotId">The internal snapshot's id.</param>
/// <param name="SnapshotName">The internal snapshot's name (tag).</param>
public sealed record Qcow2SnapshotOrigin(string Path, MigrationStream Stream, string SnapshotId, string SnapshotName)
    : MigrationStreamOrigin(MachineOriginKind.Qcow2Snapshot, Path, $"qcow2 snapshot '{SnapshotName}' (id {SnapshotId})", Stream);
