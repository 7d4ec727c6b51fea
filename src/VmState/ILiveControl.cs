using VmState.Live;

namespace VmState;

/// <summary>
/// Capability of a running VM (<c>vm.TryGet&lt;ILiveControl&gt;</c>): its run state, and stopping and starting it.
/// A snapshot file has no run state and does not give it.
/// </summary>
public interface ILiveControl
{
    /// <summary>QEMU's run state now.</summary>
    /// <exception cref="QmpException">QEMU refused the query.</exception>
    Task<QemuRunState> GetRunStateAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Pauses the guest until the returned scope is disposed: <see cref="Vm.PauseAsync"/>, with its signal and
    /// process-exit handling, owned by the <see cref="Vm"/>.
    /// </summary>
    /// <exception cref="QmpException">QEMU refused to stop the guest.</exception>
    Task<VmPause> PauseAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Runs the guest now (QMP <c>cont</c>), whatever pause scope is open; a scope disposed later finds it running.
    /// </summary>
    /// <exception cref="QmpException">QEMU refused to run the guest (e.g. it has shut down).</exception>
    Task ResumeAsync(CancellationToken cancellationToken = default);
}
