using System.Globalization;
using VmState.Live;

namespace VmState.Replay;

/// <summary>
/// A replay of a recording (<c>-icount rr=replay</c>) started with its vCPUs stopped, driven over QMP: run to an
/// instruction count (<c>replay-break</c>, then <c>cont</c>) and stay paused there, or run to the end. A second QMP
/// socket (<see cref="Info"/>) serves every live command (<c>ps --qmp</c>, <c>maps</c>, <c>dmesg</c>, <c>read</c>) on the
/// paused replay. Disposing it quits QEMU.
/// </summary>
public sealed class ReplaySession : IAsyncDisposable
{
    private readonly ReplayRun _run;
    private readonly QemuProcess _qemu;
    private readonly QmpClient _qmp;
    private Task<QmpEvent>? _nextEvent;
    private bool _ended;

    private ReplaySession(ReplayRecording recording, ReplayRun run, QemuProcess qemu, QmpClient qmp, ReplayRunInfo info)
    {
        Recording = recording;
        _run = run;
        _qemu = qemu;
        _qmp = qmp;
        Info = info;
    }

    /// <summary>The recording being replayed.</summary>
    public ReplayRecording Recording { get; }

    /// <summary>QEMU's process, the user's QMP socket, the work directory (console files) and the gdbstub port.</summary>
    public ReplayRunInfo Info { get; }

    /// <summary>True once the replay reached the end of the recording.</summary>
    public bool Ended => _ended || _qemu.HasExited;

    /// <summary>
    /// Starts a replay of <paramref name="recording"/> in <paramref name="workDirectory"/> (created; the disks' fresh
    /// overlays and the console files go there), with QEMU's gdbstub on <paramref name="gdbPort"/> when given.
    /// </summary>
    /// <exception cref="ArgumentException">A disk image changed since the recording (a replay would diverge).</exception>
    public static async Task<ReplaySession> StartAsync(ReplayRecording recording, string workDirectory, int? gdbPort = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(recording);
        ArgumentNullException.ThrowIfNull(workDirectory);
        foreach (ReplayDrive d in recording.Drives)
        {
            var now = new FileInfo(d.File);
            if (!now.Exists || now.Length != d.Size || now.LastWriteTimeUtc != d.ModifiedUtc)
            {
                throw new ArgumentException($"the disk image {d.File} changed since the recording (size or time differs, or it is gone); a replay from it would diverge");
            }
        }

        if (!File.Exists(recording.LogPath))
        {
            throw new FileNotFoundException($"the recording {recording.Directory} has no replay log {ReplayRecording.LogName}", recording.LogPath);
        }

        string work = Path.GetFullPath(workDirectory);
        ReplayRun run = await ReplayRun.PrepareAsync(work, recording.LogPath, recording.Drives, gdbPort, startPaused: true, cancellationToken).ConfigureAwait(false);
        try
        {
            QemuArguments user = QemuArguments.Parse(recording.Command);
            ReplayCommandLine.Check(user);
            QemuArguments replay = ReplayCommandLine.Build(user, ReplayMode.Replay, run.Paths, recording.Drives);
            (QemuProcess qemu, QmpClient qmp) = await QemuProcess.StartAsync(replay, run.Paths.ControlQmp, TimeSpan.FromSeconds(60), cancellationToken).ConfigureAwait(false);
            return new ReplaySession(recording, run, qemu, qmp, new ReplayRunInfo(qemu.ProcessId, run.Paths.UserQmp, work, gdbPort));
        }
        catch
        {
            await run.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The replay's current instruction count.</summary>
    public Task<ulong> IcountAsync(CancellationToken cancellationToken = default) => ReplayQmp.IcountAsync(_qmp, cancellationToken);

    /// <summary>
    /// Runs the replay until the instruction count is <paramref name="icount"/> and leaves it paused there; returns
    /// the count it stopped at (QEMU stops at the first instruction boundary at or after it).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="icount"/> is not after the current count, or past the recording's end.</exception>
    public async Task<ulong> RunToAsync(ulong icount, CancellationToken cancellationToken = default)
    {
        ulong now = await IcountAsync(cancellationToken).ConfigureAwait(false);
        if (icount <= now || icount > Recording.InstructionCount)
        {
            throw new ArgumentOutOfRangeException(nameof(icount), icount, string.Create(CultureInfo.InvariantCulture,
                $"the replay is at instruction {now} and the recording ends at {Recording.InstructionCount}; give a count after the first, up to the second"));
        }

        await ReplayQmp.BreakAsync(_qmp, icount, cancellationToken).ConfigureAwait(false);
        await _qmp.ContAsync(cancellationToken).ConfigureAwait(false);
        await WaitForStopAsync(cancellationToken).ConfigureAwait(false);
        return await IcountAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Lets the replay run (from wherever it is paused) and waits until it ends: the recorded end is replayed (QEMU
    /// stops in the shutdown state or exits), or the count reaches the recording's. Returns the count at the end.
    /// </summary>
    public async Task<ulong> RunToEndAsync(CancellationToken cancellationToken = default)
    {
        ulong now = await IcountAsync(cancellationToken).ConfigureAwait(false);
        if (now < Recording.InstructionCount)
        {
            await ReplayQmp.BreakAsync(_qmp, Recording.InstructionCount, cancellationToken).ConfigureAwait(false);
            if (await _qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false) != "running")
            {
                await _qmp.ContAsync(cancellationToken).ConfigureAwait(false);
            }

            await WaitForStopAsync(cancellationToken).ConfigureAwait(false);
        }

        _ended = true;
        return _qemu.HasExited ? Recording.InstructionCount : await IcountAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Waits while the replay runs or stays paused, until it ends (the recorded end, or the user let it run to the
    /// end through the QMP socket) or <paramref name="cancellationToken"/> is cancelled.
    /// </summary>
    public async Task WaitForEndAsync(CancellationToken cancellationToken)
    {
        while (!Ended)
        {
            Task<QmpEvent> next = _nextEvent ??= _qmp.NextEventAsync(CancellationToken.None);
            Task tick = Task.Delay(500, cancellationToken);
            await Task.WhenAny(next, tick).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            if (next.IsCompleted)
            {
                _nextEvent = null;
                if (next.IsFaulted || IsEnd(await next.ConfigureAwait(false)))
                {
                    _ended = true;
                }
            }
            else if (await IsAtEndAsync().ConfigureAwait(false))
            {
                _ended = true;
            }
        }
    }

    /// <summary>Quits QEMU and removes the sockets (the work directory stays).</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_qemu.HasExited)
        {
            try
            {
                await _qmp.QuitAsync(CancellationToken.None).ConfigureAwait(false);
                await _qemu.WaitForExitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is LiveVmGoneException or IOException or QmpException or TimeoutException)
            {
            }
        }

        await _qmp.DisposeAsync().ConfigureAwait(false);
        await _qemu.DisposeAsync().ConfigureAwait(false);
        await _run.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>A replay whose instruction count stays the same this long while it runs is stuck (below).</summary>
    internal static readonly TimeSpan StallTimeout = TimeSpan.FromSeconds(30);

    private async Task WaitForStopAsync(CancellationToken cancellationToken)
    {
        ulong lastCount = ulong.MaxValue;
        long lastChange = Environment.TickCount64;
        while (true)
        {
            Task<QmpEvent> next = _nextEvent ??= _qmp.NextEventAsync(CancellationToken.None);
            Task exited = _qemu.WaitForExitAsync(CancellationToken.None);
            Task tick = Task.Delay(1000, cancellationToken);
            Task done = await Task.WhenAny(next, exited, tick).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            if (done == exited || (next.IsCompleted && next.IsFaulted))
            {
                _ended = true;
                return;
            }

            if (next.IsCompleted)
            {
                _nextEvent = null;
                QmpEvent e = await next.ConfigureAwait(false);
                if (IsEnd(e))
                {
                    _ended = true;
                    return;
                }

                if (e.Name == "STOP")
                {
                    return;
                }
            }
            else if (await _qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false) is not "running")
            {
                // A STOP event may have come before the wait started.
                return;
            }
            else
            {
                // QEMU 7.2's replay sometimes stops advancing (seen here early in the fixture's boot, on a loaded
                // host: the vCPU thread spins, the count stays): a timeout instead of waiting forever.
                ulong count = await IcountAsync(cancellationToken).ConfigureAwait(false);
                if (count != lastCount)
                {
                    (lastCount, lastChange) = (count, Environment.TickCount64);
                }
                else if (Environment.TickCount64 - lastChange > StallTimeout.TotalMilliseconds)
                {
                    throw new TimeoutException(string.Create(CultureInfo.InvariantCulture,
                        $"the replay of {Recording.Directory} stopped advancing at instruction {count} for {StallTimeout.TotalSeconds:F0} s (a QEMU record/replay hang); a fresh replay may pass"));
                }
            }
        }
    }

    private async Task<bool> IsAtEndAsync()
    {
        try
        {
            return await _qmp.QueryStatusAsync(CancellationToken.None).ConfigureAwait(false) == "shutdown"
                || await IcountAsync(CancellationToken.None).ConfigureAwait(false) >= Recording.InstructionCount;
        }
        catch (LiveVmGoneException)
        {
            return true;
        }
    }

    private static bool IsEnd(QmpEvent e) => e.Name == "SHUTDOWN";
}
