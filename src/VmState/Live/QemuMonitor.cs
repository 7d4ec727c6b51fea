using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

using VmState.IO;

namespace VmState.Live;

/// <summary>Higher-level QEMU operations over QMP: run state, saving to a file, savevm, memory dumps.</summary>
public static class QemuMonitor
{
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

        await qmp.ExecuteAsync("migrate-set-parameters", new JsonObject { ["max-bandwidth"] = 100L << 30 }, null, cancellationToken).ConfigureAwait(false);
        await qmp.ExecuteAsync("migrate", new JsonObject { ["uri"] = $"exec:cat > '{full}'" }, null, cancellationToken).ConfigureAwait(false);
        var clock = Stopwatch.StartNew();
        TimeSpan limit = timeout ?? TimeSpan.FromMinutes(10);
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
                    throw new IOException($"QEMU's migration to {full} {status}: {why}");
            }

            if (clock.Elapsed > limit)
            {
                await qmp.ExecuteAsync("migrate_cancel", null, null, CancellationToken.None).ConfigureAwait(false);
                throw new TimeoutException($"the migration to {full} did not complete within {limit.TotalSeconds:F0} s (status {status}); cancelled");
            }

            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
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
        var clock = Stopwatch.StartNew();
        bool wasRunning = await qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false) == "running";
        // QEMU writes the stream into our temporary (created owner-only: it holds guest RAM; `cat >` keeps the
        // mode of an existing file), which is renamed into place only when the migration completed.
        using OutputFile output = OutputFile.Create(path, OutputRules.None);
        string temp = output.TempPath;
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

        try
        {
            if (wasRunning && !useBackground)
            {
                await qmp.StopAsync(cancellationToken).ConfigureAwait(false);
            }

            JsonElement stats;
            try
            {
                stats = await qmp.MigrateToFileAsync(temp, null, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                try
                {
                    await qmp.ExecuteAsync("migrate_cancel", null, TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception e) when (e is QmpException or IOException or LiveVmGoneException or TimeoutException)
                {
                }

                throw;
            }

            output.Commit();
            double? downtime = stats.TryGetProperty("downtime", out JsonElement d) && d.TryGetInt64(out long ms) ? ms : null;
            return new SaveResult(useBackground ? SaveMode.BackgroundSnapshot : wasRunning ? SaveMode.Pause : SaveMode.AlreadyPaused, new FileInfo(path).Length, downtime, clock.Elapsed, fallback);
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
    }

    private static Task SetBackgroundSnapshotAsync(QmpClient qmp, bool on) =>
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
