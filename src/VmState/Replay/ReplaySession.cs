using System.Globalization;
using System.Text.Json.Nodes;
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

    /// <summary>How long saving a checkpoint may take.</summary>
    public static readonly TimeSpan SaveTimeout = TimeSpan.FromSeconds(300);

    /// <summary>The checkpoint the replay started from (QEMU loaded it while it started), or null: from power-on.</summary>
    public ulong? StartCheckpoint { get; private set; }

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
    /// <remarks>
    /// With <paramref name="checkpoints"/> (<see cref="ReplayCheckpoints.TryOpenAsync"/>) the replay starts from copies of
    /// the checkpoint images at the checkpoint <paramref name="start"/> (one of <see cref="ReplayCheckpoints.Counts"/>)
    /// instead of power-on. <paramref name="onlyStart"/> is for a replay gdb may drive backwards: no other checkpoint is
    /// kept, and one past power-on is deleted once QEMU loaded it (HMP <c>delvm</c>), since QEMU 7.2's reverse execution
    /// would hang loading it (<see cref="ReplayCheckpoints"/>); reverse execution then reports that it cannot go back
    /// instead, or, from power-on, loads that one.
    /// </remarks>
    /// <exception cref="IOException">QEMU did not start at the checkpoint.</exception>
    public static async Task<ReplaySession> StartAsync(ReplayRecording recording, string workDirectory, int? gdbPort = null, CancellationToken cancellationToken = default, ReplayCheckpoints? checkpoints = null, ulong start = 0, bool onlyStart = false)
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
        ReplayRun run = await ReplayRun.PrepareAsync(work, recording.LogPath, recording.Drives, gdbPort, startPaused: true, cancellationToken, checkpoints, start, onlyStart).ConfigureAwait(false);
        try
        {
            QemuArguments user = QemuArguments.Parse(recording.Command);
            ReplayCommandLine.Check(user);
            QemuArguments replay = ReplayCommandLine.Build(user, ReplayMode.Replay, run.Paths, recording.Drives);
            (QemuProcess qemu, QmpClient qmp) = await QemuProcess.StartAsync(replay, run.Paths.ControlQmp, TimeSpan.FromSeconds(60), cancellationToken).ConfigureAwait(false);
            var session = new ReplaySession(recording, run, qemu, qmp, new ReplayRunInfo(qemu.ProcessId, run.Paths.UserQmp, work, gdbPort));
            if (checkpoints is not null)
            {
                session.StartCheckpoint = start;
                ulong at = await session.IcountAsync(cancellationToken).ConfigureAwait(false);
                if (at != start)
                {
                    await session.DisposeAsync().ConfigureAwait(false);
                    throw new IOException(string.Create(CultureInfo.InvariantCulture, $"the replay started from checkpoint {ReplayCheckpoints.NameOf(start)} is at instruction {at}, not {start}"));
                }

                if (onlyStart && start > 0)
                {
                    string output;
                    try
                    {
                        output = await qmp.HumanMonitorCommandAsync($"delvm {ReplayCheckpoints.NameOf(start)}", TimeSpan.FromSeconds(60), cancellationToken).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is TimeoutException or QmpException)
                    {
                        output = e.Message;
                    }

                    if (output.Trim().Length > 0)
                    {
                        await session.DisposeAsync().ConfigureAwait(false);
                        throw new IOException($"QEMU could not delete checkpoint {ReplayCheckpoints.NameOf(start)} from the replay's copy: {output.Trim()}");
                    }
                }
            }

            return session;
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
    /// Runs the paused replay on to <paramref name="icount"/> (<see cref="RunToAsync"/>), or leaves it when it is there.
    /// </summary>
    public async Task<ulong> SeekAsync(ulong icount, CancellationToken cancellationToken = default)
    {
        ulong now = await IcountAsync(cancellationToken).ConfigureAwait(false);
        return icount == now ? now : await RunToAsync(icount, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Saves a checkpoint where the paused replay is, into an image of its own in the run's work directory
    /// (<see cref="ReplayCheckpoints.ImageName"/>: QMP <c>snapshot-save</c> with that image, attached for the save, as
    /// the <c>vmstate</c> node, and every disk overlay; QEMU ties it to the instruction count). False when QEMU refuses
    /// at this instruction because replay events are pending (<c>replay_can_snapshot</c>): try at another.
    /// </summary>
    /// <exception cref="IOException">QEMU failed to save it.</exception>
    public async Task<bool> SaveCheckpointAsync(CancellationToken cancellationToken = default)
    {
        ulong now = await IcountAsync(cancellationToken).ConfigureAwait(false);
        string image = Path.Combine(_run.Paths.WorkDirectory, ReplayCheckpoints.ImageName(now));
        File.Delete(image);
        // The machine state goes after the (unused) virtual disk: 1 MiB keeps the image's tables small.
        await QemuImageTool.CreateAsync(image, 1L << 20, cancellationToken).ConfigureAwait(false);
        bool saved = false;
        try
        {
            await _qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "qcow2",
                ["node-name"] = CheckpointNode,
                ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = image },
            }, cancellationToken: cancellationToken).ConfigureAwait(false);
            string? error;
            try
            {
                var devices = new JsonArray(CheckpointNode);
                foreach (ReplayDrive d in Recording.Drives.Where(d => !d.ReadOnly))
                {
                    devices.Add((JsonNode)ReplayCommandLine.OverlayNode(d));
                }

                await _qmp.ExecuteAsync("snapshot-save", new JsonObject
                {
                    ["job-id"] = CheckpointNode,
                    ["tag"] = ReplayCheckpoints.NameOf(now),
                    ["vmstate"] = CheckpointNode,
                    ["devices"] = devices,
                }, cancellationToken: cancellationToken).ConfigureAwait(false);
                error = await QmpJobs.WaitAsync(_qmp, CheckpointNode, SaveTimeout, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                await _qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = CheckpointNode }, cancellationToken: CancellationToken.None).ConfigureAwait(false);
            }

            if (error is not null && error.Contains("does not allow making snapshot right now", StringComparison.Ordinal))
            {
                return false;
            }

            saved = error is null
                ? true
                : throw new IOException(string.Create(CultureInfo.InvariantCulture, $"QEMU could not save a checkpoint at instruction {now}: {error}"));
            return saved;
        }
        finally
        {
            if (!saved)
            {
                File.Delete(image);
            }
        }
    }

    /// <summary>The node name (and job id) of a checkpoint image while it is saved.</summary>
    private const string CheckpointNode = "rr-checkpoint";

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

    /// <summary>
    /// How often a wait for a running replay to stop asks QEMU for the count. Not only to watch it: QEMU 7.2 replays a
    /// guest's idle time (the vCPU halted until a timer) only as its main loop comes round (<c>softmmu/icount.c</c>,
    /// <c>icount_start_warp_timer</c>: in replay mode the clock warp waits for the log's next checkpoint and is tried
    /// again at the loop's next pass), and with nothing to wake it the loop sleeps until its own timers, about half a
    /// second. A QMP command wakes it: the 147,000 instructions at the end of the fixture's recording, an idle guest,
    /// replayed in 0.53 s with gdb waiting on the stub and in 0.03 s with a query every 2 ms.
    /// </summary>
    internal static readonly TimeSpan KickInterval = TimeSpan.FromMilliseconds(2);

    /// <summary>Asks QEMU for the count, which also wakes its main loop (<see cref="KickInterval"/>), and tells <paramref name="pacer"/>.</summary>
    internal async Task KickAsync(ReplayKickPacer pacer, CancellationToken cancellationToken) =>
        pacer.Observe(await IcountAsync(cancellationToken).ConfigureAwait(false));

    private async Task WaitForStopAsync(CancellationToken cancellationToken)
    {
        ulong lastCount = ulong.MaxValue;
        long lastChange = Environment.TickCount64;
        long lastStatus = Environment.TickCount64;
        var pacer = new ReplayKickPacer();
        while (true)
        {
            Task<QmpEvent> next = _nextEvent ??= _qmp.NextEventAsync(CancellationToken.None);
            Task exited = _qemu.WaitForExitAsync(CancellationToken.None);
            Task tick = Task.Delay(pacer.Delay, cancellationToken);
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

                if (e.Name == "STOP" && await _qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false) is not "running")
                {
                    // (A STOP while the VM runs is an old one: a gdb stop, or a stop before a checkpoint was loaded.)
                    return;
                }
            }
            else if (Environment.TickCount64 - lastStatus < 1000)
            {
                await KickAsync(pacer, cancellationToken).ConfigureAwait(false);
            }
            else if ((lastStatus = Environment.TickCount64) > 0 && await _qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false) is not "running")
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
        catch (TimeoutException)
        {
            // QEMU's main loop can be busy for a long time while gdb drives the replay (a reverse-continue replays
            // from a snapshot): a slow answer is not an end, and must not make vmstate quit QEMU under gdb.
            return _qemu.HasExited;
        }
    }

    private static bool IsEnd(QmpEvent e) => e.Name == "SHUTDOWN";
}
