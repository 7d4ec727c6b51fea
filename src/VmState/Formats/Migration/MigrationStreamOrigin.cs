using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>
/// The origin of a machine read from a migration stream (a stream file, a <c>virsh save</c> file, a qcow2
/// snapshot's vmstate): the parsed stream, which the editing layer copies with its edits spliced in.
/// </summary>
/// <param name="Kind">The kind of input the stream came in.</param>
/// <param name="Path">The input file.</param>
/// <param name="Description">What the input is, for messages.</param>
/// <param name="Stream">The parsed stream behind the machine.</param>
public record MigrationStreamOrigin(MachineOriginKind Kind, string Path, string Description, MigrationStream Stream)
    : MachineOrigin(Kind, Path, Description);
