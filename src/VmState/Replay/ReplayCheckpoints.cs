using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.IO;
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
/// the replay started from works. Why: the load's device post_load of kvmvapic (a VAPIC the guest kernel has enabled,
/// inactive at power-on) calls <c>run_on_cpu</c> while the main thread holds the replay mutex the vCPU thread waits
/// for (docs/benchmarks.md, "The peer answers"). So going back means a new replay QEMU, and a replay for gdb keeps only its start
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

        string info = await QemuImageTool.InfoJsonAsync(image, cancellationToken).ConfigureAwait(false);
        IReadOnlyList<ulong> counts = ParseInfo(Encoding.UTF8.GetBytes(info), image);
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

    /// <summary>Most bytes of <c>qemu-img info</c> output read (an image with <see cref="MaxSnapshots"/> snapshots prints about 20 MiB).</summary>
    internal const int MaxInfoBytes = 32 << 20;

    /// <summary>Most snapshots an image of checkpoints may list: one per index point and power-on's.</summary>
    internal const int MaxSnapshots = ReplayIndex.MaxPoints + 1;

    /// <summary>
    /// The checkpoints in the text of <c>qemu-img info --output=json</c> of the snapshot image <paramref name="image"/>
    /// (<see cref="Parse"/>), bounded: at most <see cref="MaxInfoBytes"/> bytes, nesting 16 deep.
    /// </summary>
    /// <exception cref="VmStateFormatException">The text is not JSON, or not the shape qemu-img prints (the message names the member).</exception>
    internal static IReadOnlyList<ulong> ParseInfo(ReadOnlySpan<byte> json, string image)
    {
        string structure = $"qemu-img info of {image}";
        if (json.Length > MaxInfoBytes)
        {
            throw new VmStateFormatException(0, structure, $"{json.Length} bytes, more than the {MaxInfoBytes} read");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new VmStateFormatException(e.BytePositionInLine ?? 0, structure, string.Create(CultureInfo.InvariantCulture, $"not JSON (line {e.LineNumber + 1}): {e.Message}"), e);
        }

        using (doc)
        {
            return Parse(doc.RootElement, structure);
        }
    }

    /// <summary>
    /// The checkpoints in <c>qemu-img info --output=json</c> of the snapshot image (its "snapshots", each with the
    /// instruction count QEMU tied it to; qemu-img leaves "snapshots" out when there are none), increasing. Snapshots of
    /// other names, and <c>rr-ck-</c> ones without a count or whose name does not match it, are not checkpoints and are
    /// left out.
    /// </summary>
    /// <exception cref="VmStateFormatException">
    /// The top level is not an object, "snapshots" is not an array or lists more than <see cref="MaxSnapshots"/>, or a
    /// snapshot is not an object, has no string "name", or an "icount" that is not an instruction count.
    /// </exception>
    internal static IReadOnlyList<ulong> Parse(JsonElement info, string structure = "qemu-img info")
    {
        if (info.ValueKind != JsonValueKind.Object)
        {
            throw Bad(structure, $"the top level is {info.ValueKind}, not an object");
        }

        if (!info.TryGetProperty("snapshots", out JsonElement snapshots))
        {
            return [];
        }

        if (snapshots.ValueKind != JsonValueKind.Array)
        {
            throw Bad(structure, $"\"snapshots\" is {snapshots.ValueKind}, not an array");
        }

        int n = snapshots.GetArrayLength();
        if (n > MaxSnapshots)
        {
            throw Bad(structure, string.Create(CultureInfo.InvariantCulture, $"\"snapshots\" lists {n}, more than the {MaxSnapshots} an index makes"));
        }

        var counts = new SortedSet<ulong>();
        int k = 0;
        foreach (JsonElement s in snapshots.EnumerateArray())
        {
            string at = string.Create(CultureInfo.InvariantCulture, $"snapshots[{k++}]");
            if (s.ValueKind != JsonValueKind.Object)
            {
                throw Bad(structure, $"{at} is {s.ValueKind}, not an object");
            }

            if (!s.TryGetProperty("name", out JsonElement n1) || n1.ValueKind != JsonValueKind.String)
            {
                throw Bad(structure, $"{at} has no string \"name\"");
            }

            ulong? icount = null;
            if (s.TryGetProperty("icount", out JsonElement i))
            {
                icount = i.ValueKind == JsonValueKind.Number && i.TryGetUInt64(out ulong v)
                    ? v
                    : throw Bad(structure, $"{at}.icount is {Shown(i)}, not an instruction count");
            }

            if (icount is ulong c && n1.ValueEquals(NameOf(c)))
            {
                counts.Add(c);
            }
        }

        return [.. counts];
    }

    private static VmStateFormatException Bad(string structure, string problem) => new(0, structure, problem);

    /// <summary>A JSON value for a message: its raw text, cut short.</summary>
    private static string Shown(JsonElement e)
    {
        string raw;
        try
        {
            raw = e.GetRawText();
        }
        catch (InvalidOperationException)
        {
            // (A JSON string that is not UTF-8: System.Text.Json reads it, but will not transcode it.)
            return "a value that is not UTF-8";
        }

        return raw.Length <= 40 ? raw : raw[..40] + "…";
    }
}
