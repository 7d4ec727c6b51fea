namespace VmState.Snapshots;

/// <summary>What kind of input <see cref="SnapshotLoader"/> recognised, from the file's first bytes.</summary>
public enum SnapshotKind
{
    /// <summary>A QEMU migration stream ("QEVM"): <c>migrate</c> to a file, <c>exec:cat</c>.</summary>
    MigrationStream,

    /// <summary>A <c>virsh save</c> file: libvirt's header and domain XML, then a migration stream.</summary>
    VirshSave,

    /// <summary>A qcow2 image; the machine is the vmstate of one internal snapshot (<c>savevm</c>).</summary>
    Qcow2Snapshot,

    /// <summary>An ELF core: QEMU <c>dump-guest-memory</c> or VmState's own.</summary>
    ElfCore,

    /// <summary>Raw physical memory (only when <see cref="SnapshotOpenOptions.AllowRaw"/> is set).</summary>
    RawImage,
}
