using System.Diagnostics;
using System.Text.Json;
using VmState.IO;
using VmState.Live;

namespace VmState.Replay;

/// <summary>
/// Records a VM with QEMU's deterministic record/replay (<c>-icount rr=record</c>): runs the user's QEMU command line
/// as <see cref="ReplayCommandLine.Build"/> changes it, until the user stops it (the cancellation token: VmState stops
/// the VM, reads the instruction count with <c>query-replay</c> and quits QEMU, which ends the log cleanly) or the guest
/// powers off, then writes the manifest (<see cref="ReplayRecording"/>).
/// </summary>
public static class ReplayRecorder
{
    /// <summary>
    /// Records <paramref name="command"/> (program first) into <paramref name="directory"/> (created; an existing one
    /// must be empty). <paramref name="started"/> is called once QEMU runs, with it and the user's QMP socket.
    /// </summary>
    /// <exception cref="ArgumentException">The command line has something record/replay cannot reproduce, or the directory is not empty.</exception>
    /// <exception cref="IOException">QEMU or qemu-img failed (QEMU's output is in the message).</exception>
    public static async Task<ReplayRecording> RecordAsync(string directory, IReadOnlyList<string> command, Action<ReplayRunInfo>? started = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(command);
        QemuArguments user = QemuArguments.Parse(command);
        IReadOnlyList<(string File, string? Format, bool ReadOnly)> found = ReplayCommandLine.Check(user);
        string dir = Path.GetFullPath(directory);
        if (System.IO.Directory.Exists(dir) && System.IO.Directory.EnumerateFileSystemEntries(dir).Any())
        {
            throw new ArgumentException($"{directory} exists and is not empty; a recording goes into a new or empty directory");
        }

        PrivateDirectory.Create(dir);
        var drives = new List<ReplayDrive>();
        for (int i = 0; i < found.Count; i++)
        {
            (string file, string? format, bool readOnly) = found[i];
            var info = new FileInfo(Path.GetFullPath(file));
            if (!info.Exists)
            {
                throw new FileNotFoundException($"the disk image {file} does not exist", file);
            }

            format ??= await QemuImageTool.FormatOfAsync(info.FullName, cancellationToken).ConfigureAwait(false);
            drives.Add(new ReplayDrive(i, info.FullName, format, readOnly, info.Length, info.LastWriteTimeUtc));
        }

        await using var run = await ReplayRun.PrepareAsync(dir, Path.Combine(dir, ReplayRecording.LogName), drives, gdbPort: null, startPaused: false, cancellationToken).ConfigureAwait(false);
        QemuArguments recorded = ReplayCommandLine.Build(user, ReplayMode.Record, run.Paths, drives);
        DateTimeOffset startTime = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        (QemuProcess qemu, QmpClient qmp) = await QemuProcess.StartAsync(recorded, run.Paths.ControlQmp, TimeSpan.FromSeconds(60), cancellationToken).ConfigureAwait(false);
        await using (qemu.ConfigureAwait(false))
        await using (qmp.ConfigureAwait(false))
        {
            started?.Invoke(new ReplayRunInfo(qemu.ProcessId, run.Paths.UserQmp, dir, null));
            (ReplayEndReason end, ulong icount) = await WaitForEndAsync(qemu, qmp, cancellationToken).ConfigureAwait(false);
            clock.Stop();
            if (!await qemu.WaitForExitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false))
            {
                throw new IOException($"QEMU did not exit within 30 s of quit; the recording in {dir} may be incomplete");
            }

            var recording = new ReplayRecording
            {
                Directory = dir,
                QemuVersion = $"{qmp.Version.Major}.{qmp.Version.Minor}.{qmp.Version.Micro}",
                QemuPackage = qmp.Package,
                Command = [.. command],
                RecordedCommand = recorded.ToArgv(),
                Drives = drives,
                Started = startTime,
                Duration = clock.Elapsed,
                InstructionCount = icount,
                End = end,
                LogBytes = new FileInfo(Path.Combine(dir, ReplayRecording.LogName)).Length,
            };
            recording.Save();
            return recording;
        }
    }

    private static async Task<(ReplayEndReason End, ulong Icount)> WaitForEndAsync(QemuProcess qemu, QmpClient qmp, CancellationToken cancellationToken)
    {
        ulong last = await ReplayQmp.IcountAsync(qmp, CancellationToken.None).ConfigureAwait(false);
        Task<QmpEvent>? nextEvent = null;
        while (true)
        {
            nextEvent ??= qmp.NextEventAsync(CancellationToken.None);
            Task tick = Task.Delay(500, cancellationToken);
            Task exited = qemu.WaitForExitAsync(CancellationToken.None);
            Task done = await Task.WhenAny(nextEvent, tick, exited).ConfigureAwait(false);
            if (cancellationToken.IsCancellationRequested)
            {
                // The icount is read with the vCPU stopped, so the log's end (the quit) is at exactly that count.
                await qmp.StopAsync(CancellationToken.None).ConfigureAwait(false);
                ulong icount = await ReplayQmp.IcountAsync(qmp, CancellationToken.None).ConfigureAwait(false);
                await qmp.QuitAsync(CancellationToken.None).ConfigureAwait(false);
                return (ReplayEndReason.Interrupted, icount);
            }

            if (done == exited || (done == nextEvent && nextEvent.IsFaulted))
            {
                return (ReplayEndReason.QemuExited, last);
            }

            if (done == nextEvent)
            {
                QmpEvent e = await nextEvent.ConfigureAwait(false);
                nextEvent = null;
                if (e.Name == "SHUTDOWN" && e.Data.ValueKind == JsonValueKind.Object && e.Data.TryGetProperty("guest", out JsonElement g) && g.ValueKind == JsonValueKind.True)
                {
                    // -no-shutdown: the VM stopped where the guest powered off.
                    ulong icount = await ReplayQmp.IcountAsync(qmp, CancellationToken.None).ConfigureAwait(false);
                    await qmp.QuitAsync(CancellationToken.None).ConfigureAwait(false);
                    return (ReplayEndReason.GuestShutdown, icount);
                }

                continue;
            }

            try
            {
                last = await ReplayQmp.IcountAsync(qmp, CancellationToken.None).ConfigureAwait(false);
            }
            catch (LiveVmGoneException)
            {
                return (ReplayEndReason.QemuExited, last);
            }
        }
    }
}
