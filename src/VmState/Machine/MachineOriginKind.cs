namespace VmState.Machine;

/// <summary>What kind of input a <see cref="MachineState"/> was read from.</summary>
public enum MachineOriginKind
{
    /// <summary>A QEMU migration stream file ("QEVM"): <c>migrate</c> to a file, <c>exec:cat</c>.</summary>
    MigrationStream,

    /// <summary>A <c>virsh save</c> file: libvirt's header and domain XML, then a migration stream.</summary>
    VirshSave,

    /// <summary>The vmstate of an internal snapshot (<c>savevm</c>) of a qcow2 image.</summary>
    Qcow2Snapshot,

    /// <summary>An ELF core: QEMU <c>dump-guest-memory</c> or VmState's own.</summary>
    ElfCore,

    /// <summary>A raw physical memory image: byte N of the file is guest-physical address N.</summary>
    RawImage,

    /// <summary>A running QEMU, attached through its QMP socket.</summary>
    LiveQemu,

    /// <summary>A capture in a history store (<c>STORE@N</c>): pages deduplicated across captures, device state as saved.</summary>
    HistoryCapture,
}
