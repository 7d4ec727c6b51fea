using System.Globalization;
using System.Text.Json;
using VmState.Live;

namespace VmState.Replay;

/// <summary>
/// The checkpoints of a recording (<c>REC/checkpoints/</c>, saved by <c>vmstate rr index</c>): QEMU snapshots taken with
/// <c>savevm</c> during the index replay, each tied by QEMU to the instruction count it was taken at (QEMU 7.2
/// <c>migration/savevm.c</c> sets <c>sn-&gt;icount</c> in replay mode). They live as internal snapshots in the index
/// replay's own images: the orphan snapshot image and, for a VM with disks, every disk overlay (a snapshot holds the
/// disks' state as well). A later replay starts from copies of these images (a run writes into its images, and qcow2
/// files cannot be shared by two QEMUs) with <c>rrsnapshot=</c> naming the nearest checkpoint before where it goes:
/// QEMU loads it while it starts and the replay goes on from there instead of from power-on.
/// </summary>
/// <remarks>
/// QEMU 7.2 loads such a snapshot only while it starts: <c>loadvm</c> (and <c>replay-seek</c>, which calls the same
/// <c>load_snapshot</c>) of a snapshot taken at a count above 0, in a running replay, never returns — with or without
/// NICs, for snapshots saved in replay or in record mode (<c>benchmarks/rr-snapshot-repro.py</c>); reloading the snapshot
/// the replay started from works. So going back means a new replay QEMU, and a replay for gdb keeps only its start
/// snapshot (reverse execution then reaches back to it and not further, instead of hanging).
/// </remarks>
public sealed class ReplayCheckpoints
{
    /// <summary>The checkpoint directory's name in the recording directory.</summary>
    public const string DirectoryName = "checkpoints";

    /// <summary>The prefix of a checkpoint's snapshot name (then its instruction count in decimal).</summary>
    public const string NamePrefix = "rr-ck-";

    private ReplayCheckpoints(string directory, IReadOnlyList<ulong> counts)
    {
        Directory = directory;
        Counts = counts;
    }

    /// <summary>The directory holding the images.</summary>
    public string Directory { get; }

    /// <summary>The checkpoints' instruction counts, increasing (the first is 0, power-on).</summary>
    public IReadOnlyList<ulong> Counts { get; }

    /// <summary>The checkpoint directory of <paramref name="recording"/>.</summary>
    public static string PathOf(ReplayRecording recording)
    {
        ArgumentNullException.ThrowIfNull(recording);
        return Path.Combine(recording.Directory, DirectoryName);
    }

    /// <summary>
    /// The checkpoints of <paramref name="recording"/> (read with <c>qemu-img info</c>), or null when it has none (not
    /// indexed, indexed without, or no checkpoint at power-on).
    /// </summary>
    public static async Task<ReplayCheckpoints?> TryOpenAsync(ReplayRecording recording, CancellationToken cancellationToken = default)
    {
        string dir = PathOf(recording);
        string image = Path.Combine(dir, SnapshotImageName);
        if (!File.Exists(image) || recording.Drives.Any(d => !d.ReadOnly && !File.Exists(Path.Combine(dir, d.OverlayName))))
        {
            return null;
        }

        using JsonDocument info = JsonDocument.Parse(await QemuImageTool.InfoJsonAsync(image, cancellationToken).ConfigureAwait(false));
        IReadOnlyList<ulong> counts = Parse(info.RootElement);
        return counts.Count > 0 && counts[0] == 0 ? new ReplayCheckpoints(dir, counts) : null;
    }

    /// <summary>The snapshot name of a checkpoint at <paramref name="icount"/>.</summary>
    public static string NameOf(ulong icount) => NamePrefix + icount.ToString(CultureInfo.InvariantCulture);

    /// <summary>The nearest checkpoint at or before <paramref name="icount"/>.</summary>
    public ulong NearestAtOrBefore(ulong icount)
    {
        ulong best = 0;
        foreach (ulong c in Counts)
        {
            if (c <= icount)
            {
                best = c;
            }
        }

        return best;
    }

    internal static string SnapshotImageName => "snapshots.qcow2";

    /// <summary>
    /// Copies the images into a run's <paramref name="workDirectory"/> (the snapshot image and the disk overlays of
    /// <paramref name="drives"/>, under the names the run uses); with <paramref name="only"/>, every other checkpoint is
    /// deleted from the copies.
    /// </summary>
    internal async Task CopyToAsync(string workDirectory, IReadOnlyList<ReplayDrive> drives, ulong? only, CancellationToken cancellationToken)
    {
        var images = new List<string> { Copy(SnapshotImageName, workDirectory) };
        foreach (ReplayDrive d in drives.Where(d => !d.ReadOnly))
        {
            images.Add(Copy(d.OverlayName, workDirectory));
        }

        if (only is ulong keep)
        {
            foreach (string image in images)
            {
                File.Delete(image + CopiedMark);
            }

            foreach (ulong c in Counts.Where(c => c != keep))
            {
                foreach (string image in images)
                {
                    await QemuImageTool.DeleteSnapshotAsync(image, NameOf(c), cancellationToken).ConfigureAwait(false);
                }
            }
        }
    }

    private string Copy(string name, string workDirectory)
    {
        string target = Path.Combine(workDirectory, name);
        string source = Path.Combine(Directory, name);
        var from = new FileInfo(source);
        string stamp = string.Create(CultureInfo.InvariantCulture, $"{from.Length} {from.LastWriteTimeUtc.Ticks}");
        if (File.Exists(target) && File.Exists(target + CopiedMark) && File.ReadAllText(target + CopiedMark) == stamp)
        {
            // A copy an earlier replay of the same search used (of these very checkpoints): it still holds every one.
            return target;
        }

        File.Delete(target + CopiedMark);
        File.Delete(target);
        File.Copy(source, target);
        File.WriteAllText(target + CopiedMark, stamp);
        return target;
    }

    /// <summary>Next to a complete copy of an image (a copy cut short by a crash has none, and is made again).</summary>
    private const string CopiedMark = ".copied";

    /// <summary>
    /// The checkpoints in <c>qemu-img info --output=json</c> of the snapshot image (its "snapshots", each with the
    /// instruction count QEMU tied it to), increasing; snapshots of other names, or whose name does not match their
    /// count, are left out.
    /// </summary>
    internal static IReadOnlyList<ulong> Parse(JsonElement info)
    {
        var counts = new SortedSet<ulong>();
        if (info.ValueKind != JsonValueKind.Object || !info.TryGetProperty("snapshots", out JsonElement snapshots) || snapshots.ValueKind != JsonValueKind.Array)
        {
            return [];
        }

        foreach (JsonElement s in snapshots.EnumerateArray())
        {
            if (s.ValueKind == JsonValueKind.Object && s.TryGetProperty("name", out JsonElement n) && n.ValueKind == JsonValueKind.String
                && s.TryGetProperty("icount", out JsonElement i) && i.ValueKind == JsonValueKind.Number && i.TryGetUInt64(out ulong icount)
                && n.GetString() == NameOf(icount))
            {
                counts.Add(icount);
            }
        }

        return [.. counts];
    }
}
