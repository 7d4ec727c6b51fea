using VmState.Memory;

namespace VmState.Mount;

/// <summary>How <see cref="VmMountTree.Build(Vm, VmMountOptions?)"/> makes a VM's tree.</summary>
public sealed record VmMountOptions
{
    /// <summary>The refresh interval of a running VM's view when <see cref="Refresh"/> is not given: one second.</summary>
    public static readonly TimeSpan DefaultLiveRefresh = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How long a listing or a rendered file of a running VM is kept before it is made again (null:
    /// <see cref="DefaultLiveRefresh"/> for a running VM; a snapshot's never changes).
    /// </summary>
    public TimeSpan? Refresh { get; init; }

    /// <summary>
    /// The memory that writes to <c>machine/physmem</c> and <c>proc/PID/mem</c> go to, and that those files read: a
    /// running VM's <see cref="IWritableMemory"/> (the guest sees the write at once) or a snapshot editor's overlay
    /// (<c>VmState.Editing.SnapshotEditor.Memory</c>, saved as a new snapshot). Null: the files are read-only.
    /// </summary>
    public IWritableMemory? WritableMemory { get; init; }

    /// <summary>
    /// The current state of a running VM's vCPUs, for <c>machine/cpus</c> and <c>machine/core.elf</c> (made at each
    /// open); null: the registers in <see cref="Vm.Machine"/>.
    /// </summary>
    public Func<Machine.MachineState>? CurrentState { get; init; }
}
