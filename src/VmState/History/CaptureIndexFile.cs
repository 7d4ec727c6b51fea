using System.IO.Hashing;

namespace VmState.History;

/// <summary>
/// A capture's index file (<c>index-NNNNNN</c>, <see cref="HistoryCaptureIndex"/>): derived data, written after the
/// capture is committed, replaced atomically, and recomputed from the capture when it is missing.
/// </summary>
/// <remarks>
/// Layout (little-endian): "VMSHIDX1", u32 version 1, u32 page size, u32 capture number, i64 guest pause and i64
/// wall time in microseconds (-1 unknown), u8 kernel found; without a kernel u16 + UTF-8 reason; with one u64 _text
/// address, u32 process count and per process u32 pid, u32 ppid, u32 uid, u8 flags (1 kernel thread), u64 start time
/// (ns since boot), comm and name (u16 + UTF-8 each); u32 module count and per module name, u64 base, u64 size; u32
/// device count and per device name, u32 ifindex, MAC text, u32 flags, u32 MTU; then u64 log first, u64 log next,
/// u64 log after, u32 line count and per line u64 sequence, u64 timestamp (ns), u8 level, text. Then the XxHash128
/// of everything before. Every count and string is bounded before use.
/// </remarks>
internal static class CaptureIndexFile
{
    public const int MaxBytes = 64 << 20;
    public const int MaxProcesses = 1 << 20;
    public const int MaxModules = 1 << 16;
    public const int MaxNetDevices = 1 << 16;
    public const int MaxLines = 1 << 20;
    public const int MaxText = 16 << 10;
    private static ReadOnlySpan<byte> Magic => "VMSHIDX1"u8;

    public static string Name(int number) => $"index-{number:D6}";

    public static byte[] Serialize(HistoryCaptureIndex index, int pageSize)
    {
        var w = new StoreFileWriter();
        w.Bytes(Magic);
        w.U32(1);
        w.U32((uint)pageSize);
        w.U32((uint)index.Number);
        w.I64(index.GuestPause is TimeSpan pause ? (long)pause.TotalMicroseconds : -1);
        w.I64(index.Wall is TimeSpan t ? (long)t.TotalMicroseconds : -1);
        w.U8(index.KernelError is null ? (byte)1 : (byte)0);
        if (index.KernelError is string error)
        {
            w.Str(Cut(error));
        }
        else
        {
            w.U64(index.KernelTextAddress);
            w.U32((uint)index.Processes.Count);
            foreach (HistoryProcess p in index.Processes)
            {
                w.U32((uint)p.Pid);
                w.U32((uint)p.Ppid);
                w.U32(p.Uid);
                w.U8(p.IsKernelThread ? (byte)1 : (byte)0);
                w.U64(p.StartTimeNs);
                w.Str(Cut(p.Comm));
                w.Str(Cut(p.Name));
            }

            w.U32((uint)index.Modules.Count);
            foreach (HistoryModule m in index.Modules)
            {
                w.Str(Cut(m.Name));
                w.U64(m.Base);
                w.U64(m.Size);
            }

            w.U32((uint)index.NetDevices.Count);
            foreach (HistoryNetDevice d in index.NetDevices)
            {
                w.Str(Cut(d.Name));
                w.U32((uint)d.IfIndex);
                w.Str(Cut(d.Mac));
                w.U32(d.Flags);
                w.U32(d.Mtu);
            }
        }

        w.U64(index.LogFirst);
        w.U64(index.LogNext);
        w.U64(index.LogAfter);
        w.U32((uint)index.NewLogLines.Count);
        foreach (HistoryLogLine l in index.NewLogLines)
        {
            w.U64(l.Sequence);
            w.U64(l.TimestampNs);
            w.U8((byte)l.Level);
            w.Str(Cut(l.Text));
        }

        w.U128(XxHash128.HashToUInt128(w.Written));
        return w.ToArray();
    }

    /// <summary>Parses an index file; every count and string is bounded, the trailing hash checked (unless <paramref name="checkHash"/> is false: the fuzz target reaches the fields).</summary>
    public static HistoryCaptureIndex Parse(ReadOnlySpan<byte> data, string file, bool checkHash = true)
    {
        var r = new StoreFileReader(data, file);
        if (data.Length > MaxBytes)
        {
            throw r.Error(0, "length", $"{data.Length} bytes (an index file has at most {MaxBytes})");
        }

        r.Head(Magic, "history store capture index", checkHash);
        int number = r.Count("capture number", HistoryManifest.MaxCaptures * 16);
        TimeSpan? pause = Micros(ref r, "guest pause");
        TimeSpan? wall = Micros(ref r, "wall time");
        int at = r.Position;
        byte found = r.U8("kernel found");
        if (found > 1)
        {
            throw r.Error(at, "kernel found", $"{found} (expected 0 or 1)");
        }

        string? error = null;
        ulong text = 0;
        var processes = new List<HistoryProcess>();
        var modules = new List<HistoryModule>();
        var devices = new List<HistoryNetDevice>();
        if (found == 0)
        {
            error = r.Str("kernel error", MaxText);
        }
        else
        {
            text = r.U64("kernel text address");
            int n = r.Count("process count", Math.Min(MaxProcesses, r.Remaining / 25));
            processes.Capacity = n;
            for (int i = 0; i < n; i++)
            {
                r.Item("process", i);
                int pid = (int)r.U32("pid");
                int ppid = (int)r.U32("ppid");
                uint uid = r.U32("uid");
                at = r.Position;
                byte flags = r.U8("flags");
                if (flags > 1)
                {
                    throw r.Error(at, "flags", $"0x{flags:x} (only bit 0, kernel thread, is defined)");
                }

                ulong start = r.U64("start time");
                processes.Add(new HistoryProcess(pid, ppid, uid, r.Str("comm", 256), r.Str("name", MaxText), start, flags == 1));
            }

            r.Item(null);
            n = r.Count("module count", Math.Min(MaxModules, r.Remaining / 18));
            modules.Capacity = n;
            for (int i = 0; i < n; i++)
            {
                r.Item("module", i);
                modules.Add(new HistoryModule(r.Str("name", 256), r.U64("base"), r.U64("size")));
            }

            r.Item(null);
            n = r.Count("network device count", Math.Min(MaxNetDevices, r.Remaining / 16));
            for (int i = 0; i < n; i++)
            {
                r.Item("network device", i);
                string name = r.Str("name", 256);
                int ifindex = (int)r.U32("ifindex");
                string mac = r.Str("MAC", 256);
                devices.Add(new HistoryNetDevice(name, ifindex, mac, r.U32("flags"), r.U32("MTU")));
            }

            r.Item(null);
        }

        at = r.Position;
        ulong first = r.U64("log first");
        ulong next = r.U64("log next");
        if (next < first)
        {
            throw r.Error(at, "log range", $"next sequence {next} before the first {first}");
        }

        ulong after = r.U64("log after");
        int count = r.Count("log line count", Math.Min(MaxLines, r.Remaining / 19));
        var lines = new List<HistoryLogLine>(count);
        ulong previous = 0;
        for (int i = 0; i < count; i++)
        {
            r.Item("log line", i);
            at = r.Position;
            ulong seq = r.U64("sequence");
            if (seq < after || seq >= next || (i > 0 && seq <= previous))
            {
                throw r.Error(at, "sequence", $"{seq} (expected increasing numbers from {after} up to {next})");
            }

            previous = seq;
            ulong ts = r.U64("timestamp");
            at = r.Position;
            byte level = r.U8("level");
            if (level > 7)
            {
                throw r.Error(at, "level", $"{level} (0-7)");
            }

            lines.Add(new HistoryLogLine(seq, ts, level, r.Str("text", MaxText)));
        }

        r.Item(null);
        r.Take(16, "checksum");
        r.End();
        return new HistoryCaptureIndex(number, pause, wall, error, text, processes, modules, devices, first, next, after, lines);
    }

    private static TimeSpan? Micros(ref StoreFileReader r, string field)
    {
        int at = r.Position;
        long v = r.I64(field);
        if (v < -1 || v > TimeSpan.MaxValue.Ticks / 10)
        {
            throw r.Error(at, field, $"{v} µs (expected -1 for unknown, or a duration)");
        }

        return v < 0 ? null : TimeSpan.FromMicroseconds(v);
    }

    /// <summary>A string cut to at most <see cref="MaxText"/> bytes of UTF-8 (a guest's log line or name is not trusted to be short).</summary>
    private static string Cut(string s)
    {
        if (s.Length <= MaxText / 4)
        {
            return s;
        }

        string t = s.Length > MaxText ? s[..MaxText] : s;
        while (System.Text.Encoding.UTF8.GetByteCount(t) > MaxText)
        {
            t = t[..(t.Length - 64)];
        }

        return t;
    }
}
