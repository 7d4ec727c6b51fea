using VmState.History;
using VmState.Live;
using VmState.Linux;

namespace VmState.Cli.Web;

/// <summary>
/// One opened source of the server: a <see cref="Vm"/> (snapshot or running VM) or a <see cref="HistoryStore"/>, or
/// the error that kept it from opening. Requests on one source take turns (<see cref="UseAsync{T}"/>): the library's
/// readers keep caches that are not made for concurrent callers, and a running guest's views are refreshed per request.
/// </summary>
internal sealed class WebSource : IAsyncDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private string? _kernelError;
    private bool _kernelTried;
    private VmPause? _pause;
    private int _tracing;

    private WebSource(int index, WebSourceSpec spec, Vm? vm, HistoryStore? store, string? error)
    {
        Index = index;
        Spec = spec;
        Vm = vm;
        Store = store;
        Error = error;
    }

    /// <summary>The source's number in the server's list (URLs name sources by it, never by path).</summary>
    public int Index { get; }

    /// <summary>What the command line named.</summary>
    public WebSourceSpec Spec { get; }

    /// <summary>The VM, or null for a store or a source that failed to open.</summary>
    public Vm? Vm { get; }

    /// <summary>The history store, or null.</summary>
    public HistoryStore? Store { get; }

    /// <summary>Why the source could not be opened, or null.</summary>
    public string? Error { get; }

    /// <summary>True for a running VM.</summary>
    public bool IsLive => Vm?.IsLive == true;

    /// <summary>True while the server holds the guest paused (the pause button).</summary>
    public bool PausedByServer => _pause is not null;

    /// <summary>True while a live event stream (<see cref="WebTrace"/>) traces this source.</summary>
    public bool IsTracing => Volatile.Read(ref _tracing) != 0;

    /// <summary>Claims the source's one trace; false when one runs already.</summary>
    public bool TryBeginTrace() => Interlocked.CompareExchange(ref _tracing, 1, 0) == 0;

    /// <summary>Releases the claim of <see cref="TryBeginTrace"/>.</summary>
    public void EndTrace() => Volatile.Write(ref _tracing, 0);

    /// <summary>Opens <paramref name="spec"/>; any failure becomes the source's <see cref="Error"/>.</summary>
    public static async Task<WebSource> OpenAsync(int index, WebSourceSpec spec, Func<string, Vm> openFile, VmAttachOptions attach, CancellationToken cancellationToken)
    {
        if (spec.Problem is string problem)
        {
            return new WebSource(index, spec, null, null, problem);
        }

        try
        {
            return spec.Kind switch
            {
                WebSourceKind.Snapshot => new WebSource(index, spec, openFile(spec.Location), null, null),
                WebSourceKind.Qmp => new WebSource(index, spec, await Vm.AttachAsync(spec.Location, attach, cancellationToken).ConfigureAwait(false), null, null),
                WebSourceKind.Libvirt => new WebSource(index, spec, await Vm.AttachLibvirtAsync(spec.Location, spec.Domain!, attach, cancellationToken).ConfigureAwait(false), null, null),
                _ => new WebSource(index, spec, null, HistoryStore.Open(spec.Location), null),
            };
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new WebSource(index, spec, null, null, WebErrors.Describe(e));
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> alone on this source. For a running VM the Linux views are dropped first, so
    /// every page shows the guest as it is now.
    /// </summary>
    public async Task<T> UseAsync<T>(Func<Vm, T> body, CancellationToken cancellationToken)
    {
        Vm vm = Vm ?? throw new WebRequestException(404, Store is not null ? "this source is a history store, not a VM" : $"source {Index} did not open: {Error}");
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (vm.IsLive)
            {
                vm.Linux.Refresh();
            }

            return await Task.Run(() => body(vm), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>As <see cref="UseAsync{T}"/>, with an asynchronous body.</summary>
    public async Task<T> UseAsync<T>(Func<Vm, Task<T>> body, CancellationToken cancellationToken)
    {
        Vm vm = Vm ?? throw new WebRequestException(404, Store is not null ? "this source is a history store, not a VM" : $"source {Index} did not open: {Error}");
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await body(vm).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Runs <paramref name="body"/> alone on this source's history store.</summary>
    public async Task<T> UseStoreAsync<T>(Func<HistoryStore, T> body, CancellationToken cancellationToken)
    {
        HistoryStore store = Store ?? throw new WebRequestException(404, Vm is not null ? "this source is a VM, not a history store" : $"source {Index} did not open: {Error}");
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await Task.Run(() => body(store), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// The guest's kernel, or null with the reason in <paramref name="error"/>. A failed search is not repeated for a
    /// snapshot (it would scan RAM again on every page); a running guest is tried again.
    /// </summary>
    public LinuxKernel? TryKernel(Vm vm, out string? error)
    {
        if (_kernelTried && _kernelError is not null && !vm.IsLive)
        {
            error = _kernelError;
            return null;
        }

        try
        {
            LinuxKernel k = vm.Linux.Kernel;
            _kernelTried = true;
            _kernelError = null;
            error = null;
            return k;
        }
        catch (Exception e) when (e is VmStateException or IOException)
        {
            _kernelTried = true;
            _kernelError = WebErrors.Describe(e);
            error = _kernelError;
            return null;
        }
    }

    /// <summary>Pauses the running guest until <see cref="ResumeAsync"/> (or the server's exit, which resumes it).</summary>
    public Task<bool> PauseAsync(CancellationToken cancellationToken) => UseAsync(async vm =>
    {
        RefuseWhileTracing();
        if (_pause is null)
        {
            _pause = await vm.PauseAsync(cancellationToken).ConfigureAwait(false);
        }

        return true;
    }, cancellationToken);

    /// <summary>Resumes a guest paused by <see cref="PauseAsync"/>; a guest paused by someone else is resumed too.</summary>
    public Task<bool> ResumeAsync(CancellationToken cancellationToken) => UseAsync(async vm =>
    {
        RefuseWhileTracing();
        if (_pause is not null)
        {
            await _pause.DisposeAsync().ConfigureAwait(false);
            _pause = null;
        }

        if (vm.TryGet(out ILiveControl? control) && await control.GetRunStateAsync(cancellationToken).ConfigureAwait(false) != QemuRunState.Running)
        {
            await control.ResumeAsync(cancellationToken).ConfigureAwait(false);
        }

        return true;
    }, cancellationToken);

    /// <summary>A trace stops and resumes the guest at each event: pausing it under the trace would fight the stub.</summary>
    private void RefuseWhileTracing()
    {
        if (IsTracing)
        {
            throw new WebRequestException(409, "a trace is running on this VM: close its event stream first");
        }
    }

    /// <summary>Resumes what the server paused, closes the VM or store.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_pause is not null)
        {
            await _pause.DisposeAsync().ConfigureAwait(false);
        }

        if (Vm is not null)
        {
            await Vm.DisposeAsync().ConfigureAwait(false);
        }

        Store?.Dispose();
        _gate.Dispose();
    }
}
