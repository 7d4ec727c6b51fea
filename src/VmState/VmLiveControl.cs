using VmState.Live;

namespace VmState;

/// <summary>The live capabilities of a <see cref="Vm"/> attached to a running QEMU.</summary>
internal sealed class VmLiveControl(Vm vm, QmpClient qmp) : ILiveControl, ISnapshotting
{
    public Task<QemuRunState> GetRunStateAsync(CancellationToken cancellationToken = default) => qmp.QueryRunStateAsync(cancellationToken);

    public Task<VmPause> PauseAsync(CancellationToken cancellationToken = default) => vm.PauseAsync(cancellationToken);

    public Task ResumeAsync(CancellationToken cancellationToken = default) => qmp.ContAsync(cancellationToken);

    public Task<SaveResult> SaveAsync(string path, bool background = true, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(path);
        return qmp.SaveStateToFileAsync(path, background, cancellationToken);
    }

    public Task<SaveResult> CaptureAsync(Func<Stream, CancellationToken, Task> consumer, CancellationToken cancellationToken = default) =>
        qmp.CaptureStateAsync(consumer, background: true, cancellationToken);
}
