namespace VmState;

/// <summary>What kind of thing a <see cref="VmStateNotFoundException"/> looked for.</summary>
public enum VmStateObjectKind
{
    /// <summary>An internal snapshot of a qcow2 image, by id or name.</summary>
    Snapshot,

    /// <summary>A symbol of the guest kernel (kallsyms).</summary>
    Symbol,

    /// <summary>A type in the kernel's BTF.</summary>
    Type,

    /// <summary>A guest process, by pid.</summary>
    Process,

    /// <summary>A device of the saved machine, by id.</summary>
    Device,

    /// <summary>A vCPU of the saved machine, by index.</summary>
    Cpu,

    /// <summary>A loaded module of the guest kernel, by name.</summary>
    Module,

    /// <summary>A RAM block of a snapshot, by name (QEMU's RAMBlock idstr).</summary>
    RamBlock,

    /// <summary>A libvirt domain, by name or UUID.</summary>
    Domain,
}
