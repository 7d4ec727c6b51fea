using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Win32.SafeHandles;

using VmState.IO;

namespace VmState.Live;

/// <summary>Higher-level QEMU operations over QMP: run state, saving to a file, savevm, memory dumps.</summary>
public static class QemuMonitor
{
    private static int s_captures;

    /// <summary>The run state ("running", "paused", "postmigrate", "finish-migrate", …).</summary>
    public static async Task<string> QueryStatusAsync(this QmpClient qmp, CancellationToken cancellationToken = default)
    {
        JsonElement r = await qmp.ExecuteAsync("query-status", null, null, cancellationToken).ConfigureAwait(false);
        return r.GetProperty("status").GetString() ?? "unknown";
    }

    /// <summary>The run state, typed (<see cref="QemuRunState.Unknown"/> for a status this version does not know).</summary>
    public static async Task<QemuRunState> QueryRunStateAsync(this QmpClient qmp, CancellationToken cancellationToken = default) =>
        ParseRunState(await qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false));

    /// <summary>The <see cref="QemuRunState"/> of a <c>query-status</c> status string.</summary>
    public static QemuRunState ParseRunState(string status) => status switch
    {
        "debug" => QemuRunState.Debug,
        "inmigrate" => QemuRunState.InMigrate,
        "internal-error" => QemuRunState.InternalError,
        "io-error" => QemuRunState.IOError,
        "paused" => QemuRunState.Paused,
        "postmigrate" => QemuRunState.PostMigrate,
        "prelaunch" => QemuRunState.Prelaunch,
        "finish-migrate" => QemuRunState.FinishMigrate,
        "restore-vm" => QemuRunState.RestoreVm,
        "running" => QemuRunState.Running,
        "save-vm" => QemuRunState.SaveVm,
        "shutdown" => QemuRunState.Shutdown,
        "suspended" => QemuRunState.Suspended,
        "watchdog" => QemuRunState.Watchdog,
        "guest-panicked" => QemuRunState.GuestPanicked,
        "colo" => QemuRunState.Colo,
        _ => QemuRunState.Unknown,
    };

    /// <summary>Pauses the guest (QMP stop).</summary>
    public static Task StopAsync(this QmpClient qmp, CancellationToken cancellationToken = default) =>
        qmp.ExecuteAsync("stop", null, null, cancellationToken);

    /// <summary>Resumes the guest (QMP cont).</summary>
    public static Task ContAsync(this QmpClient qmp, CancellationToken cancellationToken = default) =>
        qmp.ExecuteAsync("cont", null, null, cancellationToken);

    /// <summary>
    /// Saves the VM state as a migration stream to <paramref name="path"/> (QEMU 7.2 has no file: URI, so
    /// <c>exec:cat &gt; path</c>), with the bandwidth cap lifted (the 128 MiB/s default makes file saves slow).
    /// Waits for completion; a failed migration throws with QEMU's error text. Returns QEMU's final statistics.
    /// </summary>
    public static async Task<JsonElement> MigrateToFileAsync(this QmpClient qmp, string path, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        string full = Path.GetFullPath(path);
        if (full.Contains('\'', StringComparison.Ordinal))
        {
            throw new ArgumentException($"the output path {full} contains a single quote, which the exec: URI cannot carry");
        }

        await LiftBandwidthCapAsync(qmp, cancellationToken).ConfigureAwait(false);
        await qmp.ExecuteAsync("migrate", new JsonObject { ["uri"] = $"exec:cat > '{full}'" }, null, cancellationToken).ConfigureAwait(false);
        return await WaitForMigrationAsync(qmp, full, timeout ?? TimeSpan.FromMinutes(10), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Saves the running VM's state to <paramref name="path"/> (temporary name, then rename) and leaves the guest
    /// as it found it. With <paramref name="background"/>, QEMU's background-snapshot capability keeps the guest
    /// running while RAM is saved copy-on-write (userfaultfd write protection) — the file holds the state at the
    /// start; where QEMU refuses it the guest is paused instead and the reason returned. A guest that was running
    /// is resumed on every path (errors and cancellation included).
    /// </summary>
    public static async Task<SaveResult> SaveStateToFileAsync(this QmpClient qmp, string path, bool background, CancellationToken cancellationToken = default)
    {
        // QEMU writes the stream into our temporary (created owner-only: it holds guest RAM), handed to it as an open
        // descriptor over QMP (getfd, then migrate fd:): QEMU never opens a path, so a QEMU that runs as another
        // user (libvirt's) or on the far side of libvirt's monitor passthrough writes it just the same. The temporary
        // is renamed into place only when the migration completed.
        using OutputFile output = OutputFile.Create(path, OutputRules.None);
        return await RunConsistentMigrationAsync(qmp, background, async (_, ct) =>
        {
            await MigrateToDescriptorAsync(qmp, output.Handle, "save", ct).ConfigureAwait(false);
            JsonElement stats = await WaitForMigrationAsync(qmp, output.TempPath, TimeSpan.FromMinutes(10), ct).ConfigureAwait(false);
            output.Commit();
            return (stats, new FileInfo(path).Length);
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Takes a consistent point-in-time state of the VM and streams it straight into this process: QEMU migrates to the
    /// write end of a pipe handed to it over QMP (<c>getfd</c>, then <c>migrate fd:</c>; see <see cref="CapturePipe"/>
    /// for why a pipe) and <paramref name="consumer"/> reads the migration stream as it is produced, from a forward-only, read-only
    /// <see cref="Stream"/>; nothing is written to a file. With <paramref name="background"/> the guest keeps running
    /// (QEMU's background-snapshot: RAM saved copy-on-write as it was at the start); where QEMU refuses it, or without
    /// it, the guest is paused for the capture. Bytes the consumer leaves unread are read and dropped, so the capture
    /// completes. On every path — the consumer throws, cancellation, QEMU exits — no migration is left active, the
    /// background-snapshot capability is switched off again, and a guest that was running is running again. A paused
    /// capture is cancelled at once; a background one is read to its end first (QEMU 7.2 leaves the guest hung when a
    /// background snapshot is cut off), then the consumer's exception or the cancellation is passed on.
    /// </summary>
    /// <param name="qmp">The VM's QMP connection.</param>
    /// <param name="consumer">Reads the stream (for example parses it, hashes its pages or copies it somewhere); it
    /// gets a token that is cancelled with <paramref name="cancellationToken"/>.</param>
    /// <param name="background">Keep the guest running where QEMU can.</param>
    /// <param name="cancellationToken">Cancels the capture.</param>
    /// <returns>The mode, the stream's size, QEMU's downtime and the measured guest pause, the wall time.</returns>
    /// <exception cref="IOException">The migration failed (QEMU's reason), or the socket failed.</exception>
    /// <exception cref="QmpException">QEMU refused the migration.</exception>
    /// <exception cref="LiveVmGoneException">QEMU exited.</exception>
    public static Task<SaveResult> CaptureStateAsync(this QmpClient qmp, Func<Stream, CancellationToken, Task> consumer, bool background = true, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(consumer);
        return RunConsistentMigrationAsync(qmp, background, async (inBackground, ct) =>
        {
            // The write end of a pipe goes to QEMU over QMP (getfd): no path QEMU must reach, nobody else can write.
            (SafeFileHandle read, SafeFileHandle write) = CapturePipe.Create();
            using (read)
            {
                // A background snapshot must never be cut off, not even by this process being killed: the guard holds
                // the read end too, and drains it if this process dies (CaptureGuard).
                await using IAsyncDisposable? guard = inBackground ? await CaptureGuard.HoldAsync(read, ct).ConfigureAwait(false) : null;
                using (write)
                {
                    await MigrateToDescriptorAsync(qmp, write, "capture", ct).ConfigureAwait(false);
                }

                {
                    using var stream = new CaptureStream(read);
                    if (!inBackground)
                    {
                        await consumer(stream, ct).ConfigureAwait(false);
                        await stream.DrainAsync(ct).ConfigureAwait(false);
                        return (await WaitForMigrationAsync(qmp, "this process", TimeSpan.FromMinutes(10), ct).ConfigureAwait(false), stream.Position);
                    }

                    // A background snapshot is never cut off: measured on QEMU 7.2, a background snapshot that fails
                    // or is cancelled once RAM is write-protected leaves the guest "running" but hung (its vCPUs wait
                    // on write faults nobody resolves). So whatever the consumer does — returns early, throws, is
                    // cancelled — the rest of the stream is read and dropped until QEMU completes, and only then is
                    // the consumer's exception passed on.
                    ExceptionDispatchInfo? failed = null;
                    try
                    {
                        await consumer(stream, ct).ConfigureAwait(false);
                    }
                    catch (Exception e)
                    {
                        failed = ExceptionDispatchInfo.Capture(e);
                    }

                    await stream.DrainAsync(CancellationToken.None).ConfigureAwait(false);
                    JsonElement stats;
                    try
                    {
                        stats = await WaitForMigrationAsync(qmp, "this process", TimeSpan.FromMinutes(10), CancellationToken.None).ConfigureAwait(false);
                    }
                    catch (Exception) when (failed is not null)
                    {
                        failed.Throw();
                        throw;
                    }

                    failed?.Throw();
                    ct.ThrowIfCancellationRequested();
                    return (stats, stream.Position);
                }
            }
        }, cancellationToken);
    }

    /// <summary>
    /// Starts a migration into <paramref name="descriptor"/> (a file or a pipe's write end): the descriptor goes to
    /// QEMU over QMP (<c>getfd</c>), then <c>migrate fd:</c>. QEMU takes its copy when the migration starts; one it
    /// did not take is closed again.
    /// </summary>
    internal static async Task MigrateToDescriptorAsync(QmpClient qmp, SafeHandle descriptor, string purpose, CancellationToken ct)
    {
        string name = await PassDescriptorAsync(qmp, descriptor, purpose, ct).ConfigureAwait(false);
        await LiftBandwidthCapAsync(qmp, ct).ConfigureAwait(false);
        await StartMigrationAsync(qmp, name, ct).ConfigureAwait(false);
    }

    /// <summary>Hands <paramref name="descriptor"/> to QEMU (<c>getfd</c>) under a fresh name, which it returns.</summary>
    internal static async Task<string> PassDescriptorAsync(QmpClient qmp, SafeHandle descriptor, string purpose, CancellationToken ct)
    {
        string name = $"vmstate-{purpose}-{Environment.ProcessId}-{Interlocked.Increment(ref s_captures)}";
        await qmp.ExecuteWithDescriptorAsync("getfd", new JsonObject { ["fdname"] = name }, descriptor, null, ct).ConfigureAwait(false);
        return name;
    }

    /// <summary>
    /// <c>migrate fd:NAME</c> into a descriptor passed with <see cref="PassDescriptorAsync"/>; when it does not start,
    /// QEMU's copy of the descriptor is closed (<c>closefd</c>).
    /// </summary>
    internal static async Task StartMigrationAsync(QmpClient qmp, string name, CancellationToken ct)
    {
        try
        {
            await qmp.ExecuteAsync("migrate", new JsonObject { ["uri"] = $"fd:{name}" }, null, ct).ConfigureAwait(false);
        }
        catch
        {
            await CloseDescriptorAsync(qmp, name).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Closes QEMU's copy of a descriptor passed with <see cref="PassDescriptorAsync"/> (errors ignored: it may be taken).</summary>
    internal static async Task CloseDescriptorAsync(QmpClient qmp, string name)
    {
        try
        {
            await qmp.ExecuteAsync("closefd", new JsonObject { ["fdname"] = name }, TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is QmpException or IOException or LiveVmGoneException or TimeoutException)
        {
        }
    }

    /// <summary>
    /// The part every whole-state save shares: background snapshot asked for (or the guest paused), the migration run
    /// by <paramref name="migrate"/> (told whether the guest keeps running), and on every path the migration cancelled if it did not complete, the capability
    /// switched off and a guest that was running resumed. The guest pause is measured from QEMU's STOP and RESUME
    /// events.
    /// </summary>
    private static async Task<SaveResult> RunConsistentMigrationAsync(QmpClient qmp, bool background, Func<bool, CancellationToken, Task<(JsonElement Stats, long Bytes)>> migrate, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        DateTimeOffset started = DateTimeOffset.UtcNow;
        bool wasRunning = await qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false) == "running";
        bool useBackground = false;
        string? fallback = null;
        if (background && wasRunning)
        {
            try
            {
                await SetBackgroundSnapshotAsync(qmp, true).ConfigureAwait(false);
                useBackground = true;
            }
            catch (QmpException e)
            {
                fallback = $"QEMU refused background-snapshot ({e.Description}); the guest was paused instead";
            }
        }

        SaveResult result;
        try
        {
            if (wasRunning && !useBackground)
            {
                await qmp.StopAsync(cancellationToken).ConfigureAwait(false);
            }

            (JsonElement stats, long bytes) migrated;
            try
            {
                migrated = await migrate(useBackground, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                // A background snapshot cut off once RAM is write-protected leaves QEMU 7.2's guest hung (see
                // CaptureStateAsync), so it is let run to its end, within bounds; a paused save is cancelled at once.
                await EndMigrationAsync(qmp, letItFinish: useBackground).ConfigureAwait(false);
                throw;
            }

            double? downtime = migrated.stats.TryGetProperty("downtime", out JsonElement d) && d.TryGetInt64(out long ms) ? ms : null;
            SaveMode mode = useBackground ? SaveMode.BackgroundSnapshot : wasRunning ? SaveMode.Pause : SaveMode.AlreadyPaused;
            result = new SaveResult(mode, migrated.bytes, downtime, TimeSpan.Zero, fallback);
        }
        finally
        {
            if (useBackground)
            {
                try
                {
                    await SetBackgroundSnapshotAsync(qmp, false).ConfigureAwait(false);
                }
                catch (Exception e) when (e is QmpException or IOException or LiveVmGoneException or TimeoutException)
                {
                }
            }

            if (wasRunning)
            {
                try
                {
                    if (await qmp.QueryStatusAsync(CancellationToken.None).ConfigureAwait(false) != "running")
                    {
                        await qmp.ContAsync(CancellationToken.None).ConfigureAwait(false);
                    }
                }
                catch (Exception e) when (e is QmpException or IOException or LiveVmGoneException or TimeoutException)
                {
                }
            }
        }

        TimeSpan elapsed = clock.Elapsed;
        TimeSpan? pause = wasRunning ? await MeasurePauseAsync(qmp, started).ConfigureAwait(false) : null;
        return result with { Elapsed = elapsed, GuestPause = pause };
    }

    /// <summary>
    /// How long the guest was stopped during the save that started at <paramref name="since"/>: QEMU's own
    /// timestamps of its STOP and RESUME events (background-snapshot stops the guest while it saves the devices and
    /// starts write protection; a paused save stops it throughout). Null when the events are not both there.
    /// </summary>
    private static async Task<TimeSpan?> MeasurePauseAsync(QmpClient qmp, DateTimeOffset since)
    {
        try
        {
            QmpEvent stop;
            do
            {
                stop = await qmp.WaitForEventAsync("STOP", TimeSpan.FromSeconds(1)).ConfigureAwait(false);
            }
            while (stop.Timestamp < since);

            QmpEvent resume = await qmp.WaitForEventAsync("RESUME", TimeSpan.FromSeconds(1)).ConfigureAwait(false);
            return resume.Timestamp - stop.Timestamp;
        }
        catch (Exception e) when (e is TimeoutException or LiveVmGoneException)
        {
            return null;
        }
    }

    /// <summary>
    /// Ends a migration that may still be active and waits until QEMU says it is not: cancelled at once, or with
    /// <paramref name="letItFinish"/> left to complete by itself for up to 10 minutes before it is cancelled.
    /// </summary>
    internal static async Task EndMigrationAsync(QmpClient qmp, bool letItFinish)
    {
        try
        {
            var clock = Stopwatch.StartNew();
            TimeSpan limit = letItFinish ? TimeSpan.FromMinutes(10) : TimeSpan.Zero;
            bool cancelled = false;
            while (true)
            {
                JsonElement info = await qmp.ExecuteAsync("query-migrate", null, TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
                if (!IsMigrationActive(info))
                {
                    return;
                }

                if (!cancelled && clock.Elapsed >= limit)
                {
                    await qmp.ExecuteAsync("migrate_cancel", null, TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
                    cancelled = true;
                    clock.Restart();
                }
                else if (cancelled && clock.Elapsed > TimeSpan.FromSeconds(10))
                {
                    return;
                }

                await Task.Delay(10, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is QmpException or IOException or LiveVmGoneException or TimeoutException)
        {
        }
    }

    /// <summary>
    /// True while a <c>query-migrate</c> answer shows a migration under way (not absent, completed, failed or
    /// cancelled), the state in which QEMU refuses a new migration or a capability change.
    /// </summary>
    public static bool IsMigrationActive(JsonElement queryMigrate)
    {
        string status = queryMigrate.ValueKind == JsonValueKind.Object && queryMigrate.TryGetProperty("status", out JsonElement s) ? s.GetString() ?? string.Empty : string.Empty;
        return status is not ("" or "none" or "completed" or "failed" or "cancelled");
    }

    internal static Task LiftBandwidthCapAsync(QmpClient qmp, CancellationToken cancellationToken) =>
        qmp.ExecuteAsync("migrate-set-parameters", new JsonObject { ["max-bandwidth"] = 100L << 30 }, null, cancellationToken);

    /// <summary>Waits for the migration to complete; failed or cancelled throws with QEMU's reason; too long cancels it.</summary>
    internal static async Task<JsonElement> WaitForMigrationAsync(QmpClient qmp, string destination, TimeSpan limit, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            JsonElement info = await qmp.ExecuteAsync("query-migrate", null, null, cancellationToken).ConfigureAwait(false);
            string status = info.TryGetProperty("status", out JsonElement s) ? s.GetString() ?? string.Empty : string.Empty;
            switch (status)
            {
                case "completed":
                    return info;
                case "failed":
                case "cancelled":
                    string why = info.TryGetProperty("error-desc", out JsonElement d) ? d.GetString() ?? status : status;
                    throw new IOException($"QEMU's migration to {destination} {status}: {why}");
            }

            if (clock.Elapsed > limit)
            {
                await qmp.ExecuteAsync("migrate_cancel", null, null, CancellationToken.None).ConfigureAwait(false);
                throw new TimeoutException($"the migration to {destination} did not complete within {limit.TotalSeconds:F0} s (status {status}); cancelled");
            }

            await Task.Delay(5, cancellationToken).ConfigureAwait(false);
        }
    }

    internal static Task SetBackgroundSnapshotAsync(QmpClient qmp, bool on) =>
        qmp.ExecuteAsync("migrate-set-capabilities", new JsonObject
        {
            ["capabilities"] = new JsonArray((JsonNode)new JsonObject { ["capability"] = "background-snapshot", ["state"] = on }),
        }, null, CancellationToken.None);

    /// <summary>HMP savevm: an internal snapshot of the VM state in the VM's qcow2 disk. HMP errors throw.</summary>
    public static async Task SaveVmAsync(this QmpClient qmp, string tag, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        string output = await qmp.HumanMonitorCommandAsync($"savevm {tag}", timeout ?? TimeSpan.FromMinutes(5), cancellationToken).ConfigureAwait(false);
        if (output.Contains("Error", StringComparison.OrdinalIgnoreCase))
        {
            throw new QmpException("savevm", "GenericError", output.Trim());
        }
    }

    /// <summary>QEMU's own dump-guest-memory as an ELF core (paging off), written synchronously.</summary>
    public static Task DumpGuestMemoryAsync(this QmpClient qmp, string path, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        qmp.ExecuteAsync("dump-guest-memory", new JsonObject { ["paging"] = false, ["protocol"] = "file:" + Path.GetFullPath(path) }, timeout ?? TimeSpan.FromMinutes(5), cancellationToken);

    /// <summary>Asks QEMU to exit; the connection closing is the expected outcome.</summary>
    public static async Task QuitAsync(this QmpClient qmp, CancellationToken cancellationToken = default)
    {
        try
        {
            await qmp.ExecuteAsync("quit", null, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
        }
        catch (LiveVmGoneException)
        {
            // QEMU may close the socket before its reply arrives.
        }
    }
}
