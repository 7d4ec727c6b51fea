using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using VmState.Editing;
using VmState.IO;
using VmState.Live;

namespace VmState.History;

/// <summary>
/// Takes a running QEMU back to a capture of a history store, in place: the capture is written as an internal
/// snapshot of a temporary qcow2 image (its migration stream as the snapshot's VM state), the image is attached to
/// QEMU as a block node that no device uses, QMP <c>snapshot-load</c> loads that snapshot's VM state (QEMU stops the
/// VM, resets it, loads, and runs it again if it ran), then the node is detached and the image deleted.
/// </summary>
/// <remarks>
/// QEMU 7.2 <c>migration/savevm.c</c> <c>load_snapshot</c>: the VM state comes from the node given as
/// <c>vmstate</c>, and only the nodes listed in <c>devices</c> are reverted, so the VM's own disks (if any) are left
/// as they are: like a migration, a rollback restores memory and devices, not disk contents. The capture must come
/// from a VM with the same configuration (machine type, RAM size, devices), as for <c>-incoming</c>. The image is made
/// with <c>qemu-img</c> (an empty image with a disk-only snapshot to add ours beside) in a private temporary directory
/// that QEMU must be able to open (the same host, and a QEMU running as the same user).
/// </remarks>
public static class HistoryRollback
{
    private const string NodeName = "vmstate-rollback";
    private const string JobId = "vmstate-rollback";
    private const string Tag = "vmstate-rollback";

    /// <summary>Loads <paramref name="capture"/> of <paramref name="store"/> into the VM behind <paramref name="qmp"/>.</summary>
    /// <exception cref="QmpException">QEMU refused a step (its message says why: a different VM configuration, no snapshot support).</exception>
    /// <exception cref="IOException">qemu-img is missing or failed, or the load did not finish.</exception>
    public static async Task<HistoryRollbackResult> RollbackAsync(QmpClient qmp, HistoryStore store, HistoryCapture capture, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(capture);
        var clock = Stopwatch.StartNew();
        // CreateTempSubdirectory makes it owner-only (0700): the image holds guest memory.
        DirectoryInfo dir = Directory.CreateTempSubdirectory("vmstate-rollback-");
        string image = Path.Combine(dir.FullName, "rollback.qcow2");
        string state = Path.Combine(dir.FullName, "state.mig");
        bool attached = false;
        try
        {
            await QemuImageTool.CreateAsync(image, 1 << 20, cancellationToken).ConfigureAwait(false);
            await QemuImageTool.CreateSnapshotAsync(image, "base", cancellationToken).ConfigureAwait(false);

            // qemu-img ends the file right after the snapshot table's last entry, without the padding of an entry to a
            // multiple of 8 that the qcow2 reader expects; whole clusters past the end are free space to qcow2.
            using (FileStream f = new(image, FileMode.Open, FileAccess.ReadWrite))
            {
                const long Cluster = 64 << 10;
                f.SetLength((f.Length + Cluster - 1) / Cluster * Cluster);
            }
            long bytes;
            using (FileStream f = StoreFiles.NewFile(state))
            {
                using var buffered = new BufferedStream(f, 1 << 20);
                store.Export(capture, buffered);
                buffered.Flush();
                bytes = f.Length;
            }

            using (var source = new FileSource(state))
            {
                Qcow2SnapshotWriter.AddSnapshot(image, "base", Tag, source, cancellationToken);
            }

            File.Delete(state);
            TimeSpan prepare = clock.Elapsed;

            await qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "qcow2",
                ["node-name"] = NodeName,
                ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = image },
            }, cancellationToken: cancellationToken).ConfigureAwait(false);
            attached = true;

            var load = Stopwatch.StartNew();
            await qmp.ExecuteAsync("snapshot-load", new JsonObject
            {
                ["job-id"] = JobId,
                ["tag"] = Tag,
                ["vmstate"] = NodeName,
                ["devices"] = new JsonArray(NodeName),
            }, cancellationToken: cancellationToken).ConfigureAwait(false);
            string? error = await QmpJobs.WaitAsync(qmp, JobId, TimeSpan.FromMinutes(10), cancellationToken).ConfigureAwait(false);
            load.Stop();
            if (error is not null)
            {
                throw new QmpException("snapshot-load", "GenericError", error);
            }

            string status = (await qmp.ExecuteAsync("query-status", cancellationToken: cancellationToken).ConfigureAwait(false)).GetProperty("status").GetString() ?? "";
            return new HistoryRollbackResult(capture, bytes, prepare, load.Elapsed, status == "running");
        }
        finally
        {
            if (attached)
            {
                try
                {
                    await qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = NodeName }, cancellationToken: CancellationToken.None).ConfigureAwait(false);
                }
                catch (QmpException)
                {
                    // The node stays attached (QEMU refused to drop it); the image is still deleted below (QEMU keeps its
                    // open descriptor, nothing else can reach it).
                }
            }

            dir.Delete(recursive: true);
        }
    }
}
