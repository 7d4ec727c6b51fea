namespace VmState.Machine;

/// <summary>
/// Where a <see cref="MachineState"/> came from. The machine model names no format: an input whose writers or
/// readers need more than this (the parsed migration stream behind an editable snapshot, an ELF core's notes, a
/// qcow2 snapshot's id) gets an origin type derived from this one in its own layer (<c>MigrationStreamOrigin</c>,
/// <c>ElfCoreOrigin</c>, <c>Qcow2SnapshotOrigin</c>), which a caller tests for with a type pattern.
/// </summary>
/// <param name="Kind">The kind of input.</param>
/// <param name="Path">The file the state was read from; for a running QEMU, <c>qmp:</c> and its QMP socket.</param>
/// <param name="Description">What the input is, for messages and exports ("migration stream", "qcow2 snapshot
/// 'name' (id 1)", "ELF64 core", "raw image", "running QEMU 7.2.0, …").</param>
public record MachineOrigin(MachineOriginKind Kind, string Path, string Description)
{
    /// <summary>
    /// The guest kernel's VMCOREINFO note (header, name, descriptor) when the input carries it itself, as an ELF core
    /// does; null when it has to be found in guest memory (<see cref="VmcoreinfoLocator"/>).
    /// </summary>
    public virtual byte[]? CarriedVmcoreinfoNote => null;

    /// <summary>
    /// The libvirt domain XML that came with the input (a libvirt save image, or a libvirt domain attached live),
    /// kept as metadata; null for inputs that carry none.
    /// </summary>
    public virtual string? LibvirtDomainXml => null;
}
