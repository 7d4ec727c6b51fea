using VmState.Linux;

namespace VmState;

/// <summary>How <see cref="Vm.AttachAsync"/> attaches to a running QEMU, and how <see cref="Vm.Linux"/> finds its kernel.</summary>
public sealed record VmAttachOptions
{
    /// <summary>
    /// Pause the guest as part of attaching, before the registers are read, so <see cref="Vm.Machine"/> and every
    /// view agree; the guest is resumed when the <see cref="Vm"/> is disposed (or the process is signalled or exits),
    /// exactly as with a <see cref="Vm.PauseAsync"/> scope.
    /// </summary>
    public bool Pause { get; init; }

    /// <summary>
    /// Which sources locate the guest kernel, and the System.map / BTF files that override the in-memory symbols
    /// and types; null for <see cref="KernelLocatorOptions.Default"/>.
    /// </summary>
    public KernelLocatorOptions? Kernel { get; init; }

    /// <summary>
    /// Told when a pause scope could not resume the guest (QMP gone, timeout, QEMU refused): the guest may still be
    /// paused. Disposal never throws, because it also runs from signal and exit handlers where nobody could catch;
    /// the failure is also kept in <see cref="VmPause.ResumeFailure"/>.
    /// </summary>
    public Action<Exception>? ResumeFailed { get; init; }
}
