using VmState.Live;
using VmState.Machine;

namespace VmState.Cli.Commands;

/// <summary>
/// A command's attachment to a running VM: the machine state view, and (when asked) the guest paused for the
/// command's duration. The guest is resumed on every path: normal end, exception, Ctrl-C, process exit.
/// </summary>
internal sealed class LiveSession : IDisposable
{
    private readonly LiveMachine _live;
    private IAsyncDisposable? _pause;
    private int _resumed;

    private readonly List<System.Runtime.InteropServices.PosixSignalRegistration> _signals = [];

    private LiveSession(LiveMachine live)
    {
        _live = live;
        Console.CancelKeyPress += OnCancel;
        AppDomain.CurrentDomain.ProcessExit += OnExit;

        // System.CommandLine ends the process on SIGINT/SIGTERM without raising the handlers above; signal
        // registrations run first (most recent first), so the guest is resumed before the process goes.
        foreach (var signal in new[] { System.Runtime.InteropServices.PosixSignal.SIGINT, System.Runtime.InteropServices.PosixSignal.SIGTERM, System.Runtime.InteropServices.PosixSignal.SIGHUP, System.Runtime.InteropServices.PosixSignal.SIGQUIT })
        {
            _signals.Add(System.Runtime.InteropServices.PosixSignalRegistration.Create(signal, _ => Resume()));
        }
    }

    public MachineState Machine { get; private set; } = null!;

    public static LiveSession Open(string qmp, bool pause)
    {
        LiveMachine live = LiveMachine.AttachAsync(qmp).GetAwaiter().GetResult();

        // The signal handlers are in place before the guest is paused: no window where Ctrl-C leaves it paused.
        var session = new LiveSession(live);
        try
        {
            if (pause && live.Qmp.QueryStatusAsync().GetAwaiter().GetResult() == "running")
            {
                // The resume is armed before the stop is sent, so a signal at any moment resumes the guest.
                session._pause = new ContOnDispose(live.Qmp);
                live.Qmp.StopAsync().GetAwaiter().GetResult();
            }

            session.Machine = live.ToMachineStateAsync().GetAwaiter().GetResult();
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Console.CancelKeyPress -= OnCancel;
        AppDomain.CurrentDomain.ProcessExit -= OnExit;
        foreach (var registration in _signals)
        {
            registration.Dispose();
        }

        Resume();
        _live.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    private void Resume()
    {
        if (Interlocked.Exchange(ref _resumed, 1) == 0 && _pause is not null)
        {
            try
            {
                _pause.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is IOException or TimeoutException or QmpException)
            {
                Console.Error.WriteLine($"vmstate: warning: could not resume the guest: {e.Message}");
            }

            _pause = null;
        }
    }

    private void OnCancel(object? sender, ConsoleCancelEventArgs e) => Resume();

    private sealed class ContOnDispose(QmpClient qmp) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await qmp.ContAsync(CancellationToken.None).ConfigureAwait(false);
    }

    private void OnExit(object? sender, EventArgs e) => Resume();
}
