using VmState.Live;

namespace VmState.Replay;

/// <summary>
/// The files of one run: a fresh overlay per writable disk (so each run starts from the images as they were), the
/// snapshot image, and a private directory for the QMP sockets (short paths: a unix socket path has at most 107
/// bytes), removed when the run is disposed.
/// </summary>
internal sealed class ReplayRun : IAsyncDisposable
{
    private readonly string _sockets;

    private ReplayRun(ReplayRunPaths paths, string sockets)
    {
        Paths = paths;
        _sockets = sockets;
    }

    public ReplayRunPaths Paths { get; }

    /// <summary>
    /// Makes the run's files in <paramref name="workDirectory"/>: fresh overlays and an empty snapshot image, or with
    /// <paramref name="checkpoints"/> copies of the checkpoint images and the replay starting from the checkpoint at
    /// <paramref name="start"/> (QEMU loads it while it starts; the copied overlays hold the disks as the index replay
    /// left them, so a run from copies always starts from a checkpoint). <paramref name="onlyStart"/> deletes the other
    /// checkpoints from the copies (QEMU's reverse execution then never loads one of them: see <see cref="ReplayCheckpoints"/>).
    /// </summary>
    public static async Task<ReplayRun> PrepareAsync(string workDirectory, string log, IReadOnlyList<ReplayDrive> drives, int? gdbPort, bool startPaused, CancellationToken cancellationToken, ReplayCheckpoints? checkpoints = null, ulong start = 0, bool onlyStart = false)
    {
        Directory.CreateDirectory(workDirectory);
        string sockets = Directory.CreateTempSubdirectory("vmstate-rr-").FullName;
        var paths = new ReplayRunPaths(log, workDirectory, Path.Combine(sockets, "control.sock"), Path.Combine(sockets, "qmp.sock"))
        {
            GdbPort = gdbPort,
            StartPaused = startPaused,
            StartSnapshot = checkpoints is null ? null : ReplayCheckpoints.NameOf(start),
        };
        try
        {
            if (checkpoints is not null)
            {
                await checkpoints.CopyToAsync(workDirectory, drives, start, onlyStart, cancellationToken).ConfigureAwait(false);
                return new ReplayRun(paths, sockets);
            }

            foreach (ReplayDrive d in drives.Where(d => !d.ReadOnly))
            {
                string overlay = Path.Combine(workDirectory, d.OverlayName);
                File.Delete(overlay);
                await QemuImageTool.CreateOverlayAsync(overlay, d.File, d.Format, cancellationToken).ConfigureAwait(false);
            }

            File.Delete(paths.SnapshotImage);
            await QemuImageTool.CreateAsync(paths.SnapshotImage, 1L << 30, cancellationToken).ConfigureAwait(false);
            return new ReplayRun(paths, sockets);
        }
        catch
        {
            Directory.Delete(sockets, recursive: true);
            throw;
        }
    }

    public ValueTask DisposeAsync()
    {
        try
        {
            Directory.Delete(_sockets, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }

        return ValueTask.CompletedTask;
    }
}
