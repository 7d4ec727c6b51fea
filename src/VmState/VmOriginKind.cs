namespace VmState;

/// <summary>What a <see cref="Vm"/> was opened from.</summary>
public enum VmOriginKind
{
    /// <summary>A QEMU migration stream file ("QEVM").</summary>
    MigrationStream,

    /// <summary>A <c>virsh save</c> file.</summary>
    VirshSave,

    /// <summary>An internal snapshot of a qcow2 image.</summary>
    Qcow2Snapshot,

    /// <summary>An ELF core (QEMU <c>dump-guest-memory</c> or VmState's own).</summary>
    ElfCore,

    /// <summary>A raw physical memory image.</summary>
    RawImage,

    /// <summary>A running QEMU, attached through its QMP socket.</summary>
    LiveQemu,
}
