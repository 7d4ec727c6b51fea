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

    public static async Task<ReplayRun> PrepareAsync(string workDirectory, string log, IReadOnlyList<ReplayDrive> drives, int? gdbPort, bool startPaused, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(workDirectory);
        string sockets = Directory.CreateTempSubdirectory("vmstate-rr-").FullName;
        var paths = new ReplayRunPaths(log, workDirectory, Path.Combine(sockets, "control.sock"), Path.Combine(sockets, "qmp.sock"))
        {
            GdbPort = gdbPort,
            StartPaused = startPaused,
        };
        try
        {
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
