using System.Diagnostics;
using System.Text.Json;
using VmState.IO;

namespace VmState.Live;

/// <summary>One VM of a fleet cut: its QMP connection (a socket or libvirt's passthrough), a name for its file, its host.</summary>
/// <param name="Name">The VM's name; its snapshot is <c>NAME.mig</c> in the output directory (letters, digits, <c>.-_</c>).</param>
/// <param name="Qmp">The VM's own QMP connection (one per VM: the stops go out concurrently).</param>
/// <param name="Host">The host the VM runs on ("localhost" for this one).</param>
/// <param name="Source">How the VM was reached, for the manifest (a socket path, or libvirt's URI and domain).</param>
public sealed record FleetMember(string Name, QmpClient Qmp, string Host, string Source)
{
    /// <summary>
    /// For a VM that cannot be handed a descriptor of this process (on a remote libvirt host): saves the stopped VM
    /// to a path on its own host (e.g. <see cref="LibvirtConnection.SaveMemoryOnHost"/>). Null: the VM's QEMU streams
    /// its state into a file of this host.
    /// </summary>
    public Func<string, CancellationToken, Task>? SaveOnHost { get; init; }

    /// <summary>With <see cref="SaveOnHost"/>: the absolute directory on the VM's host its snapshot is written to.</summary>
    public string? HostDirectory { get; init; }
}

/// <summary>What the cut did to one VM.</summary>
/// <param name="Name">The VM's name.</param>
/// <param name="Host">The host it runs on.</param>
/// <param name="Source">How it was reached.</param>
/// <param name="File">Its snapshot file, or null when it failed.</param>
/// <param name="StopTime">QEMU's timestamp of the STOP event of the cut (QEMU's host clock); null when the VM was not running.</param>
/// <param name="ResumeTime">QEMU's timestamp of the RESUME event after it; null when not resumed (it was not running, or the resume failed).</param>
/// <param name="Bytes">The snapshot's size.</param>
/// <param name="Mode">"background-snapshot" (resumed once its devices were saved, RAM written copy-on-write), "pause" (paused for the whole save) or "already-paused".</param>
/// <param name="Error">Why this VM has no snapshot, or null.</param>
public sealed record FleetMemberResult(string Name, string Host, string Source, string? File, DateTimeOffset? StopTime, DateTimeOffset? ResumeTime, long Bytes, string Mode, string? Error)
{
    /// <summary>How long the guest was stopped (RESUME − STOP), when both are known.</summary>
    public TimeSpan? Pause => StopTime is DateTimeOffset s && ResumeTime is DateTimeOffset r ? r - s : null;

    /// <summary>This host's clock when the <c>stop</c> command was sent (null when the VM was not stopped by the cut).</summary>
    public DateTimeOffset? StopSent { get; init; }

    /// <summary>This host's clock when QEMU's answer to <c>stop</c> arrived.</summary>
    public DateTimeOffset? StopAnswered { get; init; }

    /// <summary>
    /// The VM's host clock minus this host's, estimated from the stop's round trip: QEMU stamps its STOP event while it
    /// handles the command, so between <see cref="StopSent"/> and <see cref="StopAnswered"/>; the estimate is the STOP
    /// timestamp minus the round trip's midpoint, within ± <see cref="ClockOffsetUncertainty"/>.
    /// </summary>
    public TimeSpan? ClockOffset => StopTime is DateTimeOffset stop && StopSent is DateTimeOffset sent && StopAnswered is DateTimeOffset answered
        ? stop - (sent + ((answered - sent) / 2))
        : null;

    /// <summary>Half the stop's round trip: how far <see cref="ClockOffset"/> can be from the true offset.</summary>
    public TimeSpan? ClockOffsetUncertainty => StopSent is DateTimeOffset sent && StopAnswered is DateTimeOffset answered && StopTime is not null
        ? (answered - sent) / 2
        : null;

    /// <summary>True when <see cref="File"/> is a path on the VM's own host (<see cref="Host"/>), saved there by its libvirt; its size is then not known here (<see cref="Bytes"/> 0).</summary>
    public bool SavedOnHost { get; init; }
}

/// <summary>The result of a fleet cut.</summary>
/// <param name="Members">Each VM, in the order given.</param>
/// <param name="Started">When the cut began (this host's clock).</param>
/// <param name="Elapsed">Wall time of the whole cut.</param>
/// <param name="Live">True when background snapshots were asked for.</param>
public sealed record FleetCut(IReadOnlyList<FleetMemberResult> Members, DateTimeOffset Started, TimeSpan Elapsed, bool Live)
{
    /// <summary>
    /// The spread of the STOP timestamps (max − min) of the VMs stopped by the cut; across hosts it includes their
    /// clocks' offsets. Null with fewer than two such VMs.
    /// </summary>
    public TimeSpan? Skew
    {
        get
        {
            List<DateTimeOffset> stops = Members.Where(m => m.StopTime is not null).Select(m => m.StopTime!.Value).ToList();
            return stops.Count < 2 ? null : stops.Max() - stops.Min();
        }
    }

    /// <summary>
    /// The skew with each remote host's STOP timestamps moved onto this host's clock by the host's measured offset
    /// (<see cref="HostClockOffset"/>); equal to <see cref="Skew"/> when every VM runs here. Accurate to the offsets'
    /// uncertainties (half the best stop round trip per host).
    /// </summary>
    public TimeSpan? CorrectedSkew
    {
        get
        {
            List<DateTimeOffset> stops = Members.Where(m => m.StopTime is not null)
                .Select(m => m.StopTime!.Value - (HostClockOffset(m.Host) ?? TimeSpan.Zero)).ToList();
            return stops.Count < 2 ? null : stops.Max() - stops.Min();
        }
    }

    /// <summary>A host's clock minus this host's: zero for this host, else measured from its VMs' stops (the one
    /// with the shortest round trip), or null when none of its VMs was stopped.</summary>
    public TimeSpan? HostClockOffset(string host) =>
        host == "localhost" ? TimeSpan.Zero : BestClockMeasurement(host)?.ClockOffset;

    private FleetMemberResult? BestClockMeasurement(string host) =>
        Members.Where(m => m.Host == host && m.ClockOffset is not null).MinBy(m => m.ClockOffsetUncertainty!.Value);

    /// <summary>Writes the manifest (<c>vmstate-fleet/1</c>) as JSON.</summary>
    public void WriteManifest(Utf8JsonWriter w)
    {
        ArgumentNullException.ThrowIfNull(w);
        w.WriteStartObject();
        w.WriteString("format", "vmstate-fleet/1");
        w.WriteString("started", Started.UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
        w.WriteBoolean("live", Live);
        w.WriteNumber("elapsedSeconds", Math.Round(Elapsed.TotalSeconds, 4));
        if (Skew is TimeSpan skew)
        {
            w.WriteNumber("skewMs", Math.Round(skew.TotalMilliseconds, 3));
        }
        else
        {
            w.WriteNull("skewMs");
        }

        if (CorrectedSkew is TimeSpan corrected)
        {
            w.WriteNumber("skewCorrectedMs", Math.Round(corrected.TotalMilliseconds, 3));
        }
        else
        {
            w.WriteNull("skewCorrectedMs");
        }

        w.WriteStartArray("hosts");
        foreach (string host in Members.Select(m => m.Host).Distinct(StringComparer.Ordinal))
        {
            w.WriteStartObject();
            w.WriteString("host", host);
            FleetMemberResult? best = BestClockMeasurement(host);
            if (host == "localhost")
            {
                w.WriteNumber("clockOffsetMs", 0);
                w.WriteNumber("clockOffsetUncertaintyMs", 0);
                w.WriteString("clockOffset", "this host: every STOP timestamp comes from the same clock");
            }
            else if (best is not null)
            {
                w.WriteNumber("clockOffsetMs", Math.Round(best.ClockOffset!.Value.TotalMilliseconds, 3));
                w.WriteNumber("clockOffsetUncertaintyMs", Math.Round(best.ClockOffsetUncertainty!.Value.TotalMilliseconds, 3));
                w.WriteString("clockOffset", $"measured: {best.Name}'s STOP timestamp against the midpoint of its stop's round trip");
            }
            else
            {
                w.WriteNull("clockOffsetMs");
                w.WriteNull("clockOffsetUncertaintyMs");
                w.WriteString("clockOffset", "not measured (no VM of this host was stopped by the cut)");
            }

            if (best is not null)
            {
                // On this host too: a check of the method (the true offset is 0, the estimate within its uncertainty).
                w.WriteNumber("measuredOffsetMs", Math.Round(best.ClockOffset!.Value.TotalMilliseconds, 3));
                w.WriteNumber("measuredUncertaintyMs", Math.Round(best.ClockOffsetUncertainty!.Value.TotalMilliseconds, 3));
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("vms");
        foreach (FleetMemberResult m in Members)
        {
            w.WriteStartObject();
            w.WriteString("name", m.Name);
            w.WriteString("host", m.Host);
            w.WriteString("source", m.Source);
            w.WriteString("file", m.File is null ? null : m.SavedOnHost ? m.File : Path.GetFileName(m.File));
            if (m.SavedOnHost)
            {
                w.WriteBoolean("savedOnHost", true);
            }

            w.WriteString("mode", m.Mode);
            w.WriteString("stopTime", m.StopTime?.UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("resumeTime", m.ResumeTime?.UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
            if (m.Pause is TimeSpan p)
            {
                w.WriteNumber("pauseMs", Math.Round(p.TotalMilliseconds, 3));
            }
            else
            {
                w.WriteNull("pauseMs");
            }

            w.WriteNumber("bytes", m.Bytes);
            w.WriteString("error", m.Error);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }
}

/// <summary>
/// A consistent cut across many VMs: every running VM is stopped at (nearly) the same moment, one connection each,
/// the stops sent concurrently; each VM's stop time is QEMU's own STOP event timestamp, so the cut's skew is their
/// spread. Then each VM's state is saved in parallel into <c>NAME.mig</c>: with <c>live</c>, as a background snapshot
/// started while it is stopped, so it runs again as soon as its devices are saved (its RAM is written copy-on-write,
/// as it was at the cut); otherwise paused for its whole save. Every VM that was running is running again afterwards
/// on every path: one VM failing (it exits, its disk fills) costs only that VM's snapshot, and cancellation resumes
/// all. Outputs are written atomically (a temporary, renamed when the save completed), owner-only.
/// </summary>
public static class FleetSnapshot
{
    /// <summary>Takes the cut into <paramref name="directory"/> (created when missing).</summary>
    /// <exception cref="ArgumentException">No members, or two with the same name, or a name not usable as a file name.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; every VM that was running runs again.</exception>
    public static async Task<FleetCut> TakeAsync(IReadOnlyList<FleetMember> members, string directory, bool live, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(members);
        ArgumentNullException.ThrowIfNull(directory);
        if (members.Count == 0)
        {
            throw new ArgumentException("a fleet cut needs at least one VM");
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (FleetMember m in members)
        {
            if (m.Name.Length == 0 || m.Name.Length > 200 || m.Name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_')) || m.Name.StartsWith('.'))
            {
                throw new ArgumentException($"'{m.Name}' cannot name a snapshot file (letters, digits, '.', '-', '_'; not starting with '.')");
            }

            if (!names.Add(m.Name))
            {
                throw new ArgumentException($"two VMs are named '{m.Name}'; their snapshots would be one file");
            }
        }

        PrivateDirectory.Create(directory);
        DateTimeOffset started = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        var states = members.Select(m => new MemberState(m, m.SaveOnHost is null ? Path.Combine(directory, m.Name + ".mig") : HostPath(m, directory))).ToArray();
        try
        {
            // Before the cut: what each VM is doing, and everything a save needs set up, so the stops go out together.
            await Task.WhenAll(states.Select(s => s.PrepareAsync(live, cancellationToken))).ConfigureAwait(false);

            // The cut: every running VM stopped at once, each on its own connection.
            await Task.WhenAll(states.Select(s => s.StopAsync(started, cancellationToken))).ConfigureAwait(false);

            // The saves, in parallel; a live one resumes its VM as soon as its devices are saved.
            await Task.WhenAll(states.Select(s => s.SaveAsync(cancellationToken))).ConfigureAwait(false);
        }
        finally
        {
            // Every VM that was running runs again, on every path; background saves are let finish (QEMU 7.2 hangs a
            // guest whose background snapshot is cut off), paused ones cancelled.
            await Task.WhenAll(states.Select(s => s.FinishAsync())).ConfigureAwait(false);
        }

        return new FleetCut(states.Select(s => s.Result()).ToList(), started, clock.Elapsed, live);
    }

    /// <summary>Where a VM that saves on its own host writes: its host directory (default: the output directory's absolute path there too).</summary>
    private static string HostPath(FleetMember m, string directory)
    {
        string dir = m.HostDirectory ?? Path.GetFullPath(directory);
        if (!dir.StartsWith('/'))
        {
            throw new ArgumentException($"{m.Name}: the directory on its host must be absolute, not '{dir}'");
        }

        return dir.TrimEnd('/') + "/" + m.Name + ".mig";
    }

    private sealed class MemberState(FleetMember member, string path)
    {
        private OutputFile? _output;
        private string? _descriptor;
        private bool _wasRunning;
        private bool _background;
        private bool _migrating;
        private bool _committed;
        private bool _savedOnHost;
        private DateTimeOffset? _stop;
        private DateTimeOffset? _stopSent;
        private DateTimeOffset? _stopAnswered;
        private DateTimeOffset? _resume;
        private long _bytes;
        private string? _error;

        public async Task PrepareAsync(bool live, CancellationToken ct)
        {
            try
            {
                _wasRunning = await member.Qmp.QueryStatusAsync(ct).ConfigureAwait(false) == "running";
                JsonElement migration = await member.Qmp.ExecuteAsync("query-migrate", null, null, ct).ConfigureAwait(false);
                if (QemuMonitor.IsMigrationActive(migration))
                {
                    throw new IOException("a migration is already active on this VM");
                }

                if (live && _wasRunning && member.SaveOnHost is null)
                {
                    try
                    {
                        await QemuMonitor.SetBackgroundSnapshotAsync(member.Qmp, true).ConfigureAwait(false);
                        _background = true;
                    }
                    catch (QmpException)
                    {
                        // Refused (e.g. no userfaultfd write protection): this VM is paused for its save instead.
                    }
                }

                if (member.SaveOnHost is not null)
                {
                    // Saved by the VM's own host (libvirt's external memory snapshot): paused for its save.
                    return;
                }

                await QemuMonitor.LiftBandwidthCapAsync(member.Qmp, ct).ConfigureAwait(false);
                _output = OutputFile.Create(path, OutputRules.None);
                _descriptor = await QemuMonitor.PassDescriptorAsync(member.Qmp, _output.Handle, "fleet", ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or QmpException or LiveVmGoneException or TimeoutException or UnauthorizedAccessException or ArgumentException)
            {
                Fail(e);
            }
        }

        public async Task StopAsync(DateTimeOffset since, CancellationToken ct)
        {
            if (_error is not null || !_wasRunning)
            {
                return;
            }

            try
            {
                _stopSent = DateTimeOffset.UtcNow;
                await member.Qmp.StopAsync(ct).ConfigureAwait(false);
                _stopAnswered = DateTimeOffset.UtcNow;
                QmpEvent stop;
                do
                {
                    stop = await member.Qmp.WaitForEventAsync("STOP", TimeSpan.FromSeconds(5), ct).ConfigureAwait(false);
                }
                while (stop.Timestamp < since.AddSeconds(-1));

                _stop = stop.Timestamp;
            }
            catch (Exception e) when (e is IOException or QmpException or LiveVmGoneException or TimeoutException)
            {
                Fail(e);
            }
        }

        public async Task SaveAsync(CancellationToken ct)
        {
            if (_error is null && member.SaveOnHost is { } saveOnHost)
            {
                try
                {
                    await saveOnHost(path, ct).ConfigureAwait(false);
                    _committed = true;
                    _savedOnHost = true;
                }
                catch (Exception e) when (e is IOException or ArgumentException or VmStateNotFoundException)
                {
                    Fail(e);
                }

                return;
            }

            if (_error is not null || _output is null || _descriptor is null)
            {
                return;
            }

            try
            {
                string descriptor = _descriptor;
                _descriptor = null;
                await QemuMonitor.StartMigrationAsync(member.Qmp, descriptor, ct).ConfigureAwait(false);
                _migrating = true;
                if (_background)
                {
                    await ResumeWhenDevicesSavedAsync(ct).ConfigureAwait(false);
                }

                await QemuMonitor.WaitForMigrationAsync(member.Qmp, path, TimeSpan.FromMinutes(10), ct).ConfigureAwait(false);
                _migrating = false;
                _output.Commit();
                _committed = true;
                _bytes = new FileInfo(path).Length;
            }
            catch (Exception e) when (e is IOException or QmpException or LiveVmGoneException or TimeoutException or UnauthorizedAccessException)
            {
                Fail(e);
            }
        }

        public async Task FinishAsync()
        {
            if (_descriptor is not null)
            {
                // Passed but never used (the cut stopped before this VM's save): QEMU's copy is closed.
                await QemuMonitor.CloseDescriptorAsync(member.Qmp, _descriptor).ConfigureAwait(false);
            }

            if (_migrating)
            {
                await QemuMonitor.EndMigrationAsync(member.Qmp, letItFinish: _background).ConfigureAwait(false);
            }

            if (_background)
            {
                try
                {
                    await QemuMonitor.SetBackgroundSnapshotAsync(member.Qmp, false).ConfigureAwait(false);
                }
                catch (Exception e) when (e is QmpException or IOException or LiveVmGoneException or TimeoutException)
                {
                }
            }

            if (_wasRunning)
            {
                try
                {
                    if (await member.Qmp.QueryStatusAsync(CancellationToken.None).ConfigureAwait(false) != "running")
                    {
                        await member.Qmp.ContAsync(CancellationToken.None).ConfigureAwait(false);
                    }

                    await NoteResumeAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is QmpException or IOException or LiveVmGoneException or TimeoutException)
                {
                    _error ??= $"could not resume the VM: {e.Message}";
                }
            }

            if (!_committed)
            {
                _output?.Dispose();
            }
        }

        public FleetMemberResult Result() => new(
            member.Name,
            member.Host,
            member.Source,
            _committed ? (_savedOnHost ? $"{member.Host}:{path}" : path) : null,
            _stop,
            _resume,
            _bytes,
            !_wasRunning ? "already-paused" : _background ? "background-snapshot" : "pause",
            _error)
        {
            StopSent = _stop is null ? null : _stopSent,
            StopAnswered = _stop is null ? null : _stopAnswered,
            SavedOnHost = _savedOnHost,
        };

        /// <summary>
        /// A background snapshot of a stopped VM: QEMU 7.2 starts the VM itself once the devices are saved and RAM is
        /// write-protected (later QEMU keeps it stopped); either way the VM runs again as soon as RAM streaming has begun.
        /// </summary>
        private async Task ResumeWhenDevicesSavedAsync(CancellationToken ct)
        {
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromMinutes(1))
            {
                try
                {
                    // QEMU 7.2 resumes the VM itself: its RESUME event is the moment.
                    QmpEvent resume = await member.Qmp.WaitForEventAsync("RESUME", TimeSpan.FromMilliseconds(20), ct).ConfigureAwait(false);
                    if (_stop is null || resume.Timestamp >= _stop.Value)
                    {
                        _resume = resume.Timestamp;
                        return;
                    }
                }
                catch (TimeoutException)
                {
                }

                JsonElement info = await member.Qmp.ExecuteAsync("query-migrate", null, null, ct).ConfigureAwait(false);
                string status = info.TryGetProperty("status", out JsonElement s) ? s.GetString() ?? string.Empty : string.Empty;
                bool ramStarted = info.TryGetProperty("ram", out JsonElement ram) && ram.TryGetProperty("transferred", out JsonElement t) && t.TryGetInt64(out long sent) && sent > 0;
                if (status is "completed" || (status is "active" && ramStarted))
                {
                    await member.Qmp.ContAsync(ct).ConfigureAwait(false);
                    await NoteResumeAsync().ConfigureAwait(false);
                    return;
                }

                if (status is "failed" or "cancelled")
                {
                    return;
                }

            }
        }

        private async Task NoteResumeAsync()
        {
            if (_resume is not null || _stop is null)
            {
                return;
            }

            try
            {
                QmpEvent resume;
                do
                {
                    resume = await member.Qmp.WaitForEventAsync("RESUME", TimeSpan.FromSeconds(2)).ConfigureAwait(false);
                }
                while (resume.Timestamp < _stop.Value);

                _resume = resume.Timestamp;
            }
            catch (Exception e) when (e is TimeoutException or LiveVmGoneException)
            {
            }
        }

        private void Fail(Exception e) => _error ??= e.Message;
    }
}
