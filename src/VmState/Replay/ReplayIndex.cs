using System.IO.Hashing;
using VmState.History;
using VmState.IO;

namespace VmState.Replay;

/// <summary>
/// The index of a recording (<c>vmstate rr index</c>, <see cref="ReplayIndexer"/>): what the Linux layer saw at regular
/// instruction counts of one replay, kept in the recording directory as <see cref="FileName"/>, so that
/// <c>vmstate rr find</c> knows between which two points a process appeared without replaying.
/// </summary>
/// <remarks>
/// File layout (little-endian): "VMSRRIX1", u32 version 1, u32 page size (4096), u64 the interval, u64 the recording's
/// instruction count, i64 the index pass time and i64 the plain replay time in microseconds (-1 unknown), u32 point
/// count, then per point u64 instruction count (increasing, at most the recording's), u32 length and the point's view
/// in the layout of a history store's capture index (its own checksum included); then the XxHash128 of everything
/// before. Every count and length is bounded before use.
/// </remarks>
public sealed class ReplayIndex
{
    /// <summary>The index file's name in the recording directory.</summary>
    public const string FileName = "index.vmsrr";

    /// <summary>At most this many points.</summary>
    public const int MaxPoints = 1 << 16;

    /// <summary>An index file has at most this many bytes.</summary>
    public const int MaxBytes = 256 << 20;

    private static ReadOnlySpan<byte> Magic => "VMSRRIX1"u8;

    /// <summary>Creates an index.</summary>
    /// <exception cref="ArgumentException">The points are not in increasing order, or one is past <paramref name="instructionCount"/>.</exception>
    public ReplayIndex(ulong every, ulong instructionCount, TimeSpan? passTime, TimeSpan? plainReplayTime, IReadOnlyList<ReplayIndexPoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        for (int i = 0; i < points.Count; i++)
        {
            if (points[i].Icount > instructionCount || (i > 0 && points[i].Icount <= points[i - 1].Icount))
            {
                throw new ArgumentException($"index point {i} at instruction {points[i].Icount} is out of order or past the recording's {instructionCount}", nameof(points));
            }
        }

        Every = every;
        InstructionCount = instructionCount;
        PassTime = passTime;
        PlainReplayTime = plainReplayTime;
        Points = points;
    }

    /// <summary>The interval between points, in instructions.</summary>
    public ulong Every { get; }

    /// <summary>The recording's instruction count when it was indexed.</summary>
    public ulong InstructionCount { get; }

    /// <summary>How long the index pass took (null: unknown).</summary>
    public TimeSpan? PassTime { get; }

    /// <summary>How long a plain replay of the same recording to its end took, when it was measured (<c>rr index --compare</c>).</summary>
    public TimeSpan? PlainReplayTime { get; }

    /// <summary>The points, in increasing instruction count.</summary>
    public IReadOnlyList<ReplayIndexPoint> Points { get; }

    /// <summary>How long saving the checkpoint at power-on took, when the pass saved checkpoints (not kept in the index file).</summary>
    public TimeSpan? PowerOnCheckpointTime { get; init; }

    /// <summary>The index file of <paramref name="recording"/>.</summary>
    public static string PathOf(ReplayRecording recording)
    {
        ArgumentNullException.ThrowIfNull(recording);
        return Path.Combine(recording.Directory, FileName);
    }

    /// <summary>Reads the index of <paramref name="recording"/>, or null when it has none.</summary>
    /// <exception cref="VmStateFormatException">The file is damaged, or belongs to another recording (another instruction count).</exception>
    public static ReplayIndex? TryLoad(ReplayRecording recording)
    {
        string path = PathOf(recording);
        if (!File.Exists(path))
        {
            return null;
        }

        var info = new FileInfo(path);
        if (info.Length > MaxBytes)
        {
            throw new VmStateFormatException(0, path, $"{info.Length} bytes (an index file has at most {MaxBytes})");
        }

        ReplayIndex index = Parse(File.ReadAllBytes(path), path);
        return index.InstructionCount == recording.InstructionCount
            ? index
            : throw new VmStateFormatException(0, path, $"the index is of a recording of {index.InstructionCount} instructions, this one has {recording.InstructionCount}: index it again");
    }

    /// <summary>Writes the index into <paramref name="recording"/>'s directory (a temporary file, then a rename).</summary>
    public void Save(ReplayRecording recording)
    {
        string path = PathOf(recording);
        string temporary = path + ".tmp";
        File.WriteAllBytes(temporary, Serialize());
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>The index file's bytes.</summary>
    public byte[] Serialize()
    {
        var w = new StoreFileWriter();
        w.Bytes(Magic);
        w.U32(1);
        w.U32(4096);
        w.U64(Every);
        w.U64(InstructionCount);
        w.I64(PassTime is TimeSpan p ? (long)p.TotalMicroseconds : -1);
        w.I64(PlainReplayTime is TimeSpan r ? (long)r.TotalMicroseconds : -1);
        w.U32((uint)Points.Count);
        foreach (ReplayIndexPoint point in Points)
        {
            byte[] view = CaptureIndexFile.Serialize(point.View, 4096);
            w.U64(point.Icount);
            w.U32((uint)view.Length);
            w.Bytes(view);
        }

        w.U128(XxHash128.HashToUInt128(w.Written));
        return w.ToArray();
    }

    /// <summary>
    /// Parses an index file: every count and length bounded, the points in order, the trailing hash checked (unless
    /// <paramref name="checkHash"/> is false: the fuzz target reaches the fields).
    /// </summary>
    /// <exception cref="VmStateFormatException">The file is damaged.</exception>
    public static ReplayIndex Parse(ReadOnlySpan<byte> data, string file, bool checkHash = true)
    {
        var r = new StoreFileReader(data, file);
        if (data.Length > MaxBytes)
        {
            throw r.Error(0, "length", $"{data.Length} bytes (an index file has at most {MaxBytes})");
        }

        r.Head(Magic, "recording index", checkHash);
        ulong every = r.U64("interval");
        int at = r.Position;
        ulong count = r.U64("instruction count");
        if (every == 0 && count > 0)
        {
            throw r.Error(at - 8, "interval", "0 (an index has at least one instruction between points)");
        }

        TimeSpan? pass = Micros(ref r, "index pass time");
        TimeSpan? plain = Micros(ref r, "plain replay time");
        int n = r.Count("point count", Math.Min(MaxPoints, r.Remaining / 12));
        var points = new List<ReplayIndexPoint>(n);
        for (int i = 0; i < n; i++)
        {
            at = r.Position;
            ulong icount = r.U64($"point {i} instruction count");
            if (icount > count || (i > 0 && icount <= points[^1].Icount))
            {
                throw r.Error(at, $"point {i} instruction count", $"{icount} (expected increasing counts up to {count})");
            }

            int length = r.Count($"point {i} length", r.Remaining);
            HistoryCaptureIndex view = CaptureIndexFile.Parse(r.Take(length, $"point {i} view"), $"{file} point {i}", checkHash);
            points.Add(new ReplayIndexPoint(icount, view));
        }

        r.Take(16, "checksum");
        r.End();
        return new ReplayIndex(every, count, pass, plain, points);
    }

    private static TimeSpan? Micros(ref StoreFileReader r, string field)
    {
        int at = r.Position;
        long v = r.I64(field);
        return v switch
        {
            -1 => null,
            >= 0 => TimeSpan.FromMicroseconds(v),
            _ => throw r.Error(at, field, $"{v} (expected -1 or a number of microseconds)"),
        };
    }
}
