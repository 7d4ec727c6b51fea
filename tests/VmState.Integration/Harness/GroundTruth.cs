using System.Globalization;

namespace VmState.Integration.Harness;

/// <summary>What the guest said about itself on the serial console (eng/README.md gives the line grammar).</summary>
public sealed class GroundTruth
{
    /// <summary>A process line.</summary>
    public sealed record Process(int Pid, int Ppid, int Uid, string Comm)
    {
        /// <summary>The real gid (-1 when the line has none).</summary>
        public int Gid { get; init; } = -1;

        /// <summary>The /proc/PID/stat state letter when printed ('\0' when the line has none).</summary>
        public char State { get; init; }

        /// <summary>/proc/PID/stat starttime: clock ticks (USER_HZ, 100 per second) since boot (-1 when the line has none).</summary>
        public long StartTicks { get; init; } = -1;

        /// <summary>The Threads: count of /proc/PID/status (-1 when the line has none).</summary>
        public int Threads { get; init; } = -1;

        /// <summary>The Name: line of /proc/PID/status, escaped as status escapes it (null when not printed).</summary>
        public string? StatusName { get; init; }

        /// <summary>Field 2 of /proc/PID/stat, the name unescaped (null when not printed).</summary>
        public string? StatName { get; init; }

        /// <summary>
        /// Whether <paramref name="later"/>, read from a snapshot taken after the line was printed, is the state this
        /// long-lived process can be in then: the same letter, or running and sleeping in either order (the marker
        /// wakes once a second to tick, so on a loaded host either moment can catch it between its sleeps).
        /// </summary>
        public bool AllowsLaterState(char later) => later == State || ("RS".Contains(State) && "RS".Contains(later));
    }

    /// <summary>A NIC line.</summary>
    public sealed record Nic(string Name, string Mac, string Driver)
    {
        /// <summary>The MTU (-1 when the line has none).</summary>
        public int Mtu { get; init; } = -1;

        /// <summary>net_device.flags from sysfs (null when the line has none).</summary>
        public uint? Flags { get; init; }
    }

    /// <summary>A /proc/modules line: name, size, reference count, state (Live, Loading, Unloading) and base address.</summary>
    public sealed record ModuleInfo(string Name, ulong Size, int References, string State, ulong Base);

    /// <summary>The marker process line.</summary>
    public sealed record MarkerInfo(int Pid, string Value, ulong VirtualAddress, ulong PhysicalAddress, ulong GValueVirtualAddress, ulong GValuePhysicalAddress);

    /// <summary>uname -r.</summary>
    public string KernelVersion { get; private set; } = string.Empty;

    /// <summary>Every process at the time of printing.</summary>
    public List<Process> Processes { get; } = [];

    /// <summary>Every NIC but lo.</summary>
    public List<Nic> Nics { get; } = [];

    /// <summary>Loaded modules.</summary>
    public List<string> Modules { get; } = [];

    /// <summary>Loaded modules with their /proc/modules columns (lines that carry them).</summary>
    public List<ModuleInfo> ModuleDetails { get; } = [];

    /// <summary>The marker process.</summary>
    public MarkerInfo? Marker { get; private set; }

    /// <summary>Lines of /proc/kallsyms.</summary>
    public int KallsymsCount { get; private set; }

    /// <summary>The string written to the kernel log.</summary>
    public string? DmesgMarker { get; private set; }

    /// <summary>Raw "VMSTATE-TRUTH key rest" lines, for facts without a typed property.</summary>
    public List<(string Key, string Text)> Lines { get; } = [];

    /// <summary>Parses the serial log text.</summary>
    public static GroundTruth Parse(string serial)
    {
        var t = new GroundTruth();
        var statusNames = new Dictionary<int, string>();
        var statNames = new Dictionary<int, string>();
        foreach (string raw in serial.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            if (!line.StartsWith("VMSTATE-TRUTH ", StringComparison.Ordinal))
            {
                continue;
            }

            string body = line["VMSTATE-TRUTH ".Length..];
            int sp = body.IndexOf(' ', StringComparison.Ordinal);
            string key = sp < 0 ? body : body[..sp];
            string rest = sp < 0 ? string.Empty : body[(sp + 1)..];
            t.Lines.Add((key, rest));
            Dictionary<string, string> kv = KeyValues(rest, key is "procname" or "procstat" ? "name=" : "comm=");
            switch (key)
            {
                case "procname":
                    statusNames[Int(kv["pid"])] = kv["name"];
                    break;
                case "procstat":
                    statNames[Int(kv["pid"])] = kv["name"];
                    break;
                case "kernel":
                    t.KernelVersion = rest.Trim();
                    break;
                case "proc":
                    t.Processes.Add(new Process(Int(kv["pid"]), Int(kv["ppid"]), Int(kv["uid"]), kv["comm"])
                    {
                        Gid = kv.TryGetValue("gid", out string? gid) && gid.Length > 0 ? Int(gid) : -1,
                        State = kv.TryGetValue("state", out string? state) && state.Length == 1 ? state[0] : '\0',
                        StartTicks = kv.TryGetValue("start", out string? start) && start.Length > 0 ? long.Parse(start, CultureInfo.InvariantCulture) : -1,
                        Threads = kv.TryGetValue("threads", out string? threads) && threads.Length > 0 ? Int(threads) : -1,
                        StatusName = statusNames.GetValueOrDefault(Int(kv["pid"])),
                        StatName = statNames.GetValueOrDefault(Int(kv["pid"])),
                    });
                    break;
                case "nic":
                    t.Nics.Add(new Nic(kv["name"], kv["mac"], kv.GetValueOrDefault("driver", string.Empty))
                    {
                        Mtu = kv.TryGetValue("mtu", out string? mtu) && mtu.Length > 0 ? Int(mtu) : -1,
                        Flags = kv.TryGetValue("flags", out string? flags) && flags.Length > 0 ? (uint)Hex(flags) : null,
                    });
                    break;
                case "module":
                    t.Modules.Add(kv["name"]);
                    if (kv.ContainsKey("size"))
                    {
                        t.ModuleDetails.Add(new ModuleInfo(kv["name"], ulong.Parse(kv["size"], CultureInfo.InvariantCulture), Int(kv["refs"]), kv["state"], Hex(kv["base"])));
                    }

                    break;
                case "marker":
                    t.Marker = new MarkerInfo(Int(kv["pid"]), kv["value"], Hex(kv["addr"]), Hex(kv["paddr"]), Hex(kv["g_value_addr"]), Hex(kv["g_value_paddr"]));
                    break;
                case "kallsyms":
                    t.KallsymsCount = Int(kv["count"]);
                    break;
                case "dmesg-marker":
                    t.DmesgMarker = rest.Trim();
                    break;
            }
        }

        return t;
    }

    /// <summary>key=value pairs; <paramref name="last"/> ("comm=", "name=") takes the rest of the line (names may contain spaces).</summary>
    private static Dictionary<string, string> KeyValues(string rest, string last)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        int comm = rest.IndexOf(last, StringComparison.Ordinal);
        string head = comm >= 0 ? rest[..comm] : rest;
        if (comm >= 0)
        {
            d[last[..^1]] = rest[(comm + last.Length)..];
        }

        foreach (string part in head.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                d[part[..eq]] = part[(eq + 1)..];
            }
        }

        return d;
    }

    private static int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);

    private static ulong Hex(string s) => ulong.Parse(s.StartsWith("0x", StringComparison.Ordinal) ? s[2..] : s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
}
