using VmState.Machine;

namespace VmState.Live;

/// <summary>The origin of a machine attached live through libvirt: the domain's live XML is kept as metadata.</summary>
/// <param name="Kind">Always <see cref="MachineOriginKind.LiveQemu"/>.</param>
/// <param name="Path"><c>libvirt:DOMAIN@URI</c>.</param>
/// <param name="Description">What the input is, for messages.</param>
/// <param name="DomainXml">The domain's live XML when attached.</param>
public sealed record LibvirtDomainOrigin(MachineOriginKind Kind, string Path, string Description, string DomainXml)
    : MachineOrigin(Kind, Path, Description)
{
    /// <inheritdoc />
    public override string? LibvirtDomainXml => DomainXml.Length == 0 ? null : DomainXml;
}
