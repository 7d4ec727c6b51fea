using System.Runtime.InteropServices;
using VmState.Live;

namespace VmState;

/// <summary>
/// A running guest paused for a while (<see cref="Vm.PauseAsync"/>): disposing it resumes the guest, and so does
/// SIGINT, SIGTERM, SIGHUP, SIGQUIT or the process exiting while it is open. A guest that was already paused when
/// the scope was taken is left paused. On a snapshot the scope does nothing.
/// </summary>
/// <remarks>
/// Scopes are not counted: an inner scope taken while an outer one holds the guest finds it paused and resumes
/// nothing; the outer scope resumes it. Disposal never throws (it also runs from signal and exit handlers); a
/// failed resume is reported to <see cref="VmAttachOptions.ResumeFailed"/> and kept in <see cref="ResumeFailure"/>.
/// </remarks>
public sealed class VmPause : IAsyncDisposable, IDisposable
{
    private static readonly PosixSignal[] s_signals = [PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP, PosixSignal.SIGQUIT];

    private readonly QmpClient? _qmp;
    private readonly Action<Exception>? _resumeFailed;
    private readonly Action<VmPause>? _closed;
    private readonly List<PosixSignalRegistration> _signals = [];
    private volatile bool _armed;
    private int _resumed;
    private int _closedFlag;

    private VmPause(QmpClient? qmp, Action<Exception>? resumeFailed, Action<VmPause>? closed)
    {
        _qmp = qmp;
        _resumeFailed = resumeFailed;
        _closed = closed;
        if (qmp is null)
        {
            return;
        }

        Console.CancelKeyPress += OnCancel;
        AppDomain.CurrentDomain.ProcessExit += OnExit;

        // System.CommandLine (and any host that ends the process on SIGINT/SIGTERM) does so without raising the
        // handlers above; signal registrations run first (most recent first), so the guest is resumed before the
        // process goes. The handler does not cancel the signal: the process still ends as it would have.
        foreach (PosixSignal signal in s_signals)
        {
            _signals.Add(PosixSignalRegistration.Create(signal, _ => Resume()));
        }
    }

    /// <summary>True when this scope stopped the guest and will resume it (false on a snapshot or an already paused guest).</summary>
    public bool StoppedGuest => _armed;

    /// <summary>True once the scope has been disposed or a signal or process exit has resumed the guest.</summary>
    public bool IsResumed => Volatile.Read(ref _resumed) != 0;

    /// <summary>Why resuming the guest failed, if it did (the guest may still be paused).</summary>
    public Exception? ResumeFailure { get; private set; }

    /// <summary>A scope that pauses nothing: what a snapshot <see cref="Vm"/> returns.</summary>
    internal static VmPause None() => new(null, null, null);

    /// <summary>Pauses the guest behind <paramref name="qmp"/> if it is running.</summary>
    internal static async Task<VmPause> StartAsync(QmpClient qmp, Action<Exception>? resumeFailed, Action<VmPause> closed, CancellationToken cancellationToken)
    {
        // The signal handlers are in place before the guest is paused: no window where Ctrl-C leaves it paused.
        var pause = new VmPause(qmp, resumeFailed, closed);
        try
        {
            if (await qmp.QueryRunStateAsync(cancellationToken).ConfigureAwait(false) == QemuRunState.Running)
            {
                // The resume is armed before the stop is sent, so a signal at any moment resumes the guest.
                pause._armed = true;
                await qmp.StopAsync(cancellationToken).ConfigureAwait(false);
            }

            return pause;
        }
        catch
        {
            await pause.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Resumes the guest if this scope paused it, and removes the signal and exit handlers.</summary>
    public void Dispose()
    {
        Unregister();
        Resume();
        Closed();
    }

    /// <summary>Resumes the guest if this scope paused it, and removes the signal and exit handlers.</summary>
    public async ValueTask DisposeAsync()
    {
        Unregister();
        if (Interlocked.Exchange(ref _resumed, 1) == 0 && _armed && _qmp is not null)
        {
            try
            {
                await _qmp.ContAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (IsResumeFailure(e))
            {
                Failed(e);
            }
        }

        Closed();
    }

    private static bool IsResumeFailure(Exception e) => e is IOException or LiveVmGoneException or TimeoutException or QmpException or ObjectDisposedException;

    private void Resume()
    {
        if (Interlocked.Exchange(ref _resumed, 1) == 0 && _armed && _qmp is not null)
        {
            try
            {
                // Synchronous on purpose: signal and exit handlers must not return before the guest runs again.
                _qmp.ContAsync(CancellationToken.None).GetAwaiter().GetResult();
            }
            catch (Exception e) when (IsResumeFailure(e))
            {
                Failed(e);
            }
        }
    }

    private void Failed(Exception e)
    {
        ResumeFailure = e;
        _resumeFailed?.Invoke(e);
    }

    private void Unregister()
    {
        if (_qmp is null)
        {
            return;
        }

        Console.CancelKeyPress -= OnCancel;
        AppDomain.CurrentDomain.ProcessExit -= OnExit;
        lock (_signals)
        {
            foreach (PosixSignalRegistration registration in _signals)
            {
                registration.Dispose();
            }

            _signals.Clear();
        }
    }

    private void Closed()
    {
        if (Interlocked.Exchange(ref _closedFlag, 1) == 0)
        {
            _closed?.Invoke(this);
        }
    }

    private void OnCancel(object? sender, ConsoleCancelEventArgs e) => Resume();

    private void OnExit(object? sender, EventArgs e) => Resume();
}
