using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.IO;
using VmState.Live;

namespace VmState.Replay;

/// <summary>
/// The checkpoints of a recording (<c>REC/checkpoints/</c>, saved by <c>vmstate rr index</c>): QEMU snapshots taken
/// during the index replay, each tied by QEMU to the instruction count it was taken at (QEMU 7.2
/// <c>migration/savevm.c</c> sets <c>sn-&gt;icount</c> in replay mode). Each checkpoint's machine state lives in an image
/// of its own, <c>rr-ck-COUNT.qcow2</c> (QMP <c>snapshot-save</c> with that image as the <c>vmstate</c> node), so a replay
/// starting from one copies that image alone, about the guest's RAM in size; for a VM with disks, every disk overlay of
/// the index replay holds every checkpoint's disk state as an internal snapshot as well. A later replay starts from
/// copies (a run writes into its images, and qcow2 files cannot be shared by two QEMUs) with <c>rrsnapshot=</c> naming
/// the nearest checkpoint before where it goes: QEMU loads it while it starts and the replay goes on from there instead
/// of from power-on. An index of an earlier version kept every checkpoint in one image, <c>snapshots.qcow2</c>; such a
/// directory is still read (<see cref="OneImage"/>), and a replay from it copies the whole image.
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

    private const string ImageSuffix = ".qcow2";

    private ReplayCheckpoints(string directory, IReadOnlyList<ulong> counts, bool oneImage)
    {
        Directory = directory;
        Counts = counts;
        OneImage = oneImage;
    }

    /// <summary>The directory holding the images.</summary>
    public string Directory { get; }

    /// <summary>The checkpoints' instruction counts, increasing (the first is 0, power-on).</summary>
    public IReadOnlyList<ulong> Counts { get; }

    /// <summary>
    /// True for an index of an earlier version: every checkpoint in one image (<c>snapshots.qcow2</c>), which a replay
    /// copies whole; false: an image per checkpoint (<see cref="ImageName"/>).
    /// </summary>
    public bool OneImage { get; }

    /// <summary>The checkpoint directory of <paramref name="recording"/>.</summary>
    public static string PathOf(ReplayRecording recording)
    {
        ArgumentNullException.ThrowIfNull(recording);
        return Path.Combine(recording.Directory, DirectoryName);
    }

    /// <summary>
    /// The checkpoints of <paramref name="recording"/> (the names of its checkpoint images; for an index of an earlier
    /// version, <c>qemu-img info</c> of its one image), or null when it has none (not indexed, indexed without, or no
    /// checkpoint at power-on).
    /// </summary>
    /// <exception cref="VmStateFormatException">The directory holds more checkpoint images than an index makes.</exception>
    public static async Task<ReplayCheckpoints?> TryOpenAsync(ReplayRecording recording, CancellationToken cancellationToken = default)
    {
        string dir = PathOf(recording);
        if (!System.IO.Directory.Exists(dir) || recording.Drives.Any(d => !d.ReadOnly && !File.Exists(Path.Combine(dir, d.OverlayName))))
        {
            return null;
        }

        IReadOnlyList<ulong> counts = ParseImageNames(System.IO.Directory.EnumerateFiles(dir).Select(Path.GetFileName).OfType<string>(), dir);
        if (counts.Count > 0)
        {
            return counts[0] == 0 ? new ReplayCheckpoints(dir, counts, oneImage: false) : null;
        }

        string image = Path.Combine(dir, SnapshotImageName);
        if (!File.Exists(image))
        {
            return null;
        }

        string info = await QemuImageTool.InfoJsonAsync(image, cancellationToken).ConfigureAwait(false);
        counts = ParseInfo(Encoding.UTF8.GetBytes(info), image);
        return counts.Count > 0 && counts[0] == 0 ? new ReplayCheckpoints(dir, counts, oneImage: true) : null;
    }

    /// <summary>The snapshot name of the checkpoint at <paramref name="icount"/>.</summary>
    public static string NameOf(ulong icount) => NamePrefix + icount.ToString(CultureInfo.InvariantCulture);

    /// <summary>The file name of the image holding the checkpoint at <paramref name="icount"/>.</summary>
    public static string ImageName(ulong icount) => NameOf(icount) + ImageSuffix;

    /// <summary>The nearest checkpoint at or before <paramref name="icount"/> (0, power-on, when none is later).</summary>
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

    /// <summary>The image of an index of an earlier version, holding every checkpoint (and the orphan image of every run).</summary>
    internal static string SnapshotImageName => "snapshots.qcow2";

    /// <summary>
    /// The instruction counts of the checkpoint images among <paramref name="fileNames"/> (<c>rr-ck-COUNT.qcow2</c>, the
    /// count in decimal without leading zeros), increasing; other names are not checkpoints and are skipped.
    /// </summary>
    /// <exception cref="VmStateFormatException">More than <see cref="MaxSnapshots"/> checkpoint images.</exception>
    internal static IReadOnlyList<ulong> ParseImageNames(IEnumerable<string> fileNames, string directory)
    {
        var counts = new SortedSet<ulong>();
        foreach (string name in fileNames)
        {
            if (!name.StartsWith(NamePrefix, StringComparison.Ordinal) || !name.EndsWith(ImageSuffix, StringComparison.Ordinal))
            {
                continue;
            }

            ReadOnlySpan<char> digits = name.AsSpan(NamePrefix.Length, name.Length - NamePrefix.Length - ImageSuffix.Length);
            // (ASCII digits only: ulong.TryParse also takes trailing NULs.)
            if (digits.Length is 0 or > 20 || (digits.Length > 1 && digits[0] == '0') || digits.ContainsAnyExceptInRange('0', '9')
                || !ulong.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out ulong c))
            {
                continue;
            }

            counts.Add(c);
            if (counts.Count > MaxSnapshots)
            {
                throw Bad($"the checkpoint directory {directory}", string.Create(CultureInfo.InvariantCulture, $"more than the {MaxSnapshots} checkpoint images an index makes"));
            }
        }

        return [.. counts];
    }

    /// <summary>
    /// Copies what a replay starting from the checkpoint at <paramref name="start"/> needs into
    /// <paramref name="workDirectory"/>: that checkpoint's image as the run's snapshot image, and every disk overlay.
    /// The overlays are copied once for the replays of one search (an earlier copy of these very checkpoints still
    /// holds every one: loading a checkpoint brings the disks back to it); the checkpoint image every time (QEMU writes
    /// into it as it loads). <paramref name="onlyStart"/> deletes every other checkpoint from the copies.
    /// </summary>
    internal async Task CopyToAsync(string workDirectory, IReadOnlyList<ReplayDrive> drives, ulong start, bool onlyStart, CancellationToken cancellationToken)
    {
        var images = new List<string>();
        if (OneImage)
        {
            images.Add(Copy(SnapshotImageName, SnapshotImageName, workDirectory, reuse: true));
        }
        else
        {
            Copy(ImageName(start), SnapshotImageName, workDirectory, reuse: false);
        }

        foreach (ReplayDrive d in drives.Where(d => !d.ReadOnly))
        {
            images.Add(Copy(d.OverlayName, d.OverlayName, workDirectory, reuse: true));
        }

        if (onlyStart && images.Count > 0)
        {
            foreach (string image in images)
            {
                File.Delete(image + CopiedMark);
            }

            foreach (ulong c in Counts.Where(c => c != start))
            {
                foreach (string image in images)
                {
                    await QemuImageTool.DeleteSnapshotAsync(image, NameOf(c), cancellationToken).ConfigureAwait(false);
                }
            }
        }
    }

    private string Copy(string name, string targetName, string workDirectory, bool reuse)
    {
        string target = Path.Combine(workDirectory, targetName);
        string source = Path.Combine(Directory, name);
        var from = new FileInfo(source);
        if (!from.Exists)
        {
            throw new FileNotFoundException($"the checkpoint image {source} is gone (index the recording again: vmstate rr index)", source);
        }

        string stamp = string.Create(CultureInfo.InvariantCulture, $"{from.Length} {from.LastWriteTimeUtc.Ticks}");
        if (reuse && File.Exists(target) && File.Exists(target + CopiedMark) && File.ReadAllText(target + CopiedMark) == stamp)
        {
            // A copy an earlier replay of the same search used (of these very checkpoints): it still holds every one.
            return target;
        }

        File.Delete(target + CopiedMark);
        File.Delete(target);
        File.Copy(source, target);
        if (reuse)
        {
            File.WriteAllText(target + CopiedMark, stamp);
        }

        return target;
    }

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
