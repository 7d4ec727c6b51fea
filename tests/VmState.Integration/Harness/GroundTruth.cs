using System.Globalization;

namespace VmState.Integration.Harness;

/// <summary>What the guest said about itself on the serial console (eng/README.md gives the line grammar).</summary>
public sealed class GroundTruth
{
    /// <summary>A process line.</summary>
    public sealed record Process(int Pid, int Ppid, int Uid, string Comm);

    /// <summary>A NIC line.</summary>
    public sealed record Nic(string Name, string Mac, string Driver);

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
            Dictionary<string, string> kv = KeyValues(rest);
            switch (key)
            {
                case "kernel":
                    t.KernelVersion = rest.Trim();
                    break;
                case "proc":
                    t.Processes.Add(new Process(Int(kv["pid"]), Int(kv["ppid"]), Int(kv["uid"]), kv["comm"]));
                    break;
                case "nic":
                    t.Nics.Add(new Nic(kv["name"], kv["mac"], kv.GetValueOrDefault("driver", string.Empty)));
                    break;
                case "module":
                    t.Modules.Add(kv["name"]);
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

    /// <summary>key=value pairs; "comm" takes the rest of the line (names may contain spaces).</summary>
    private static Dictionary<string, string> KeyValues(string rest)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        int comm = rest.IndexOf("comm=", StringComparison.Ordinal);
        string head = comm >= 0 ? rest[..comm] : rest;
        if (comm >= 0)
        {
            d["comm"] = rest[(comm + 5)..];
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
