using VmState.Formats.Migration;
using VmState.Machine;

namespace VmState.Snapshots;

/// <summary>
/// The origin of a machine read from a libvirt save image (<c>virsh save</c>, <c>virsh managedsave</c>, the memory
/// file of <c>virsh snapshot-create-as --memspec</c>): the migration stream as for any stream, plus the domain XML
/// libvirt stored in front of it, kept as metadata.
/// </summary>
/// <param name="Kind">The kind of input.</param>
/// <param name="Path">The input file.</param>
/// <param name="Description">What the input is, for messages.</param>
/// <param name="Stream">The parsed stream behind the machine.</param>
/// <param name="DomainXml">The domain XML libvirt saved with the state (empty when the image holds none).</param>
public sealed record LibvirtSaveOrigin(MachineOriginKind Kind, string Path, string Description, MigrationStream Stream, string DomainXml)
    : MigrationStreamOrigin(Kind, Path, Description, Stream)
{
    /// <inheritdoc />
    public override string? LibvirtDomainXml => DomainXml.Length == 0 ? null : DomainXml;
}
