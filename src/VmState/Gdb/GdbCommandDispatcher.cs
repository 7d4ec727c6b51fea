using System.Globalization;
using System.Text;

namespace VmState.Gdb;

/// <summary>
/// Answers an authenticated client's packets (GDB manual, "Packets" and "General Query Packets"): each packet name
/// to its handler — registers, memory, thread selection, the stop reply a snapshot always gives, detach and kill,
/// <c>qSupported</c>, the target description, thread lists and <c>qRcmd</c> monitor commands — over a
/// <see cref="GdbTarget"/>. Packets it does not support get the empty reply the protocol prescribes.
/// </summary>
internal sealed class GdbCommandDispatcher
{
    private const string MonitorHelp = "vmstate gdbserver monitor commands:\n  phys on|off  memory addresses are guest-physical / virtual\n  save NAME    write a new snapshot with the changes made, as NAME in the server's save directory\n  edits        list the changes made\n  auth TOKEN   authenticate (servers started with --token)";

    private readonly GdbTarget _target;
    private readonly TextWriter _log;

    public GdbCommandDispatcher(GdbTarget target, TextWriter log)
    {
        _target = target;
        _log = log;
    }

    /// <summary>The target the packets act on.</summary>
    public GdbTarget Target => _target;

    /// <summary>Set when the client asked to kill the target (the server may exit).</summary>
    public bool KillRequested { get; private set; }

    /// <summary>The payload of a <c>qRcmd</c> packet: the monitor command, hex-encoded.</summary>
    /// <exception cref="FormatException">Not hex.</exception>
    public static string DecodeMonitorCommand(string hex)
    {
        if (hex.Length % 2 != 0 || !GdbText.TryFromHex(hex, out byte[] bytes))
        {
            throw new FormatException("qRcmd carries no hex-encoded command");
        }

        return Encoding.UTF8.GetString(bytes);
    }

    /// <summary>The answer to packet <paramref name="p"/> (payload, escapes removed).</summary>
    /// <exception cref="VmStateException">Guest data or an edit the target refuses.</exception>
    /// <exception cref="ArgumentException">A register that cannot be written, or a save name that is refused.</exception>
    /// <exception cref="InvalidOperationException">A write to a read-only input.</exception>
    public GdbAnswer Handle(string p, CancellationToken ct)
    {
        if (p.Length == 0)
        {
            return new GdbAnswer(GdbReplies.Malformed);
        }

        switch (p[0])
        {
            case '?':
                return new GdbAnswer(StopReply());
            case 'g':
                return new GdbAnswer(p.Length == 1 ? ReadAllRegisters() : GdbReplies.Malformed);
            case 'G':
                return new GdbAnswer(WriteAllRegisters(p.AsSpan(1)));
            case 'p':
                return new GdbAnswer(GdbText.TryHex(p.AsSpan(1), out ulong pn) && pn < (ulong)_target.Registers.Count
                    ? Convert.ToHexStringLower(_target.ReadRegister((int)pn))
                    : GdbReplies.NoSuchRegister);
            case 'P':
                return new GdbAnswer(WriteRegisterPacket(p.AsSpan(1)));
            case 'm':
                return new GdbAnswer(ReadMemory(p.AsSpan(1)));
            case 'M':
                return new GdbAnswer(WriteMemory(p.AsSpan(1)));
            case 'H':
                return new GdbAnswer(SetThread(p.AsSpan(1)));
            case 'T':
                return new GdbAnswer(ParseThread(p.AsSpan(1)) is int x && x >= 0 ? "OK" : GdbReplies.NoSuchThread);
            case 'c':
            case 's':
            case 'C':
            case 'S':
                _log.WriteLine("gdbserver: a snapshot cannot run; reporting a stop instead");
                return new GdbAnswer(StopReply());
            case 'D':
                return new GdbAnswer("OK", End: true);
            case 'k':
                KillRequested = true;
                return new GdbAnswer(string.Empty, End: true);
            case 'q':
            case 'Q':
                return Query(p, ct);
            default:
                // 'v' packets (vCont, vMustReplyEmpty, vFile…), 'X', 'Z' (breakpoints) and the rest: not supported,
                // which the protocol says to answer with an empty packet.
                return new GdbAnswer(string.Empty);
        }
    }

    /// <summary>The stop reply: signal 5 (SIGTRAP) in the selected thread.</summary>
    public string StopReply() => $"T05thread:{_target.Thread + 1:x};";

    private string ReadTargetDescription(ReadOnlySpan<char> args)
    {
        // qXfer:features:read:ANNEX:OFFSET,LENGTH (GDB manual, "General Query Packets").
        int colon = args.IndexOf(':');
        if (colon < 0 || !args[..colon].SequenceEqual("target.xml"))
        {
            // E00 is what the manual prescribes for an annex that does not exist.
            return colon < 0 ? GdbReplies.Malformed : "E00";
        }

        if (!GdbText.TryRange(args[(colon + 1)..], out ulong offset, out ulong length))
        {
            return GdbReplies.Malformed;
        }

        string xml = _target.TargetXml;
        if (offset >= (ulong)xml.Length)
        {
            return "l";
        }

        // Escaping can double a character, so at most half a packet of the document goes into one reply.
        int take = (int)Math.Min(Math.Min(length, (ulong)(GdbRemoteServer.MaxPacketSize / 2 - 2)), (ulong)xml.Length - offset);
        string chunk = xml.Substring((int)offset, take);
        return ((int)offset + chunk.Length >= xml.Length ? "l" : "m") + GdbText.Escape(chunk);
    }

    private GdbAnswer Query(string p, CancellationToken ct)
    {
        if (p.StartsWith("qSupported", StringComparison.Ordinal))
        {
            return new GdbAnswer($"PacketSize={GdbRemoteServer.MaxPacketSize:x};qXfer:features:read+;QStartNoAckMode+");
        }

        if (p == "QStartNoAckMode")
        {
            return new GdbAnswer("OK");
        }

        if (p.StartsWith("qXfer:features:read:", StringComparison.Ordinal))
        {
            return new GdbAnswer(ReadTargetDescription(p.AsSpan("qXfer:features:read:".Length)));
        }

        if (p == "qfThreadInfo")
        {
            return new GdbAnswer("m" + string.Join(',', Enumerable.Range(0, _target.CpuCount).Select(i => (i + 1).ToString("x", CultureInfo.InvariantCulture))));
        }

        if (p == "qsThreadInfo")
        {
            return new GdbAnswer("l");
        }

        if (p == "qC")
        {
            return new GdbAnswer($"QC{_target.Thread + 1:x}");
        }

        if (p == "qAttached")
        {
            return new GdbAnswer("1");
        }

        if (p.StartsWith("qThreadExtraInfo,", StringComparison.Ordinal))
        {
            if (ParseThread(p.AsSpan("qThreadExtraInfo,".Length)) is not int t || t < 0)
            {
                return new GdbAnswer(GdbReplies.NoSuchThread);
            }

            return new GdbAnswer(Convert.ToHexStringLower(Encoding.ASCII.GetBytes(_target.DescribeThread(t))));
        }

        if (p.StartsWith("qRcmd,", StringComparison.Ordinal))
        {
            (string output, bool ok) = Monitor(DecodeMonitorCommand(p["qRcmd,".Length..]).Trim(), ct);
            return new GdbAnswer(ok ? "OK" : GdbReplies.Malformed, output);
        }

        if (p.StartsWith("qSymbol", StringComparison.Ordinal))
        {
            return new GdbAnswer("OK");
        }

        return new GdbAnswer(string.Empty);
    }

    private (string Output, bool Ok) Monitor(string command, CancellationToken ct)
    {
        string[] words = command.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries);
        switch (words.Length > 0 ? words[0] : string.Empty)
        {
            case "phys":
                if (words.Length == 2 && words[1] is "on" or "off")
                {
                    _target.PhysicalMode = words[1] == "on";
                }

                return ($"memory addresses are {(_target.PhysicalMode ? "guest-physical" : "virtual (page tables of the selected vCPU)")}", true);
            case "save":
                return _target.Save(words.Length == 2 ? words[1].Trim() : null, ct);
            case "edits":
                return (_target.Edits.Count == 0 ? "no edits" : string.Join('\n', _target.Edits), true);
            case "auth":
                return ("already authenticated", true);
            default:
                return (MonitorHelp, true);
        }
    }

    /// <summary>
    /// A thread id as gdb sends it (hex, "-1" for all, "0" for any); the vCPU index, -1 for all/any, or null when
    /// no such vCPU exists or the text is not a thread id.
    /// </summary>
    private int? ParseThread(ReadOnlySpan<char> text)
    {
        if (text is "-1" or "0")
        {
            return -1;
        }

        if (!GdbText.TryHex(text, out ulong id) || id == 0 || id > (ulong)_target.CpuCount)
        {
            return null;
        }

        return (int)id - 1;
    }

    private string SetThread(ReadOnlySpan<char> args)
    {
        // Hg selects the thread for register and memory access, Hc the one to resume (which a snapshot never does).
        if (args.Length == 0 || args[0] is not ('g' or 'c') || ParseThread(args[1..]) is not int t)
        {
            return GdbReplies.NoSuchThread;
        }

        if (args[0] == 'g' && t >= 0)
        {
            _target.Thread = t;
        }

        return "OK";
    }

    private string ReadAllRegisters()
    {
        var sb = new StringBuilder();
        for (int i = 0; i < _target.Registers.Count; i++)
        {
            sb.Append(Convert.ToHexStringLower(_target.ReadRegister(i)));
        }

        return sb.ToString();
    }

    private string WriteAllRegisters(ReadOnlySpan<char> hex)
    {
        // The G packet carries the whole block in 'g' order; anything shorter or longer would shift every register
        // after the mismatch, so it is refused before anything is written.
        int expected = _target.RegisterBlockSize;
        if (hex.Length != expected * 2 || !GdbText.TryFromHex(hex, out byte[] all))
        {
            _log.WriteLine($"gdbserver: G packet carries {hex.Length / 2} bytes; the register block has {expected}");
            return GdbReplies.BadRegisterSize;
        }

        _target.WriteRegisters(all);
        return "OK";
    }

    private string WriteRegisterPacket(ReadOnlySpan<char> args)
    {
        // P n=value, the value in target byte order and exactly the register's size.
        int eq = args.IndexOf('=');
        if (eq < 0 || !GdbText.TryHex(args[..eq], out ulong n))
        {
            return GdbReplies.Malformed;
        }

        if (n >= (ulong)_target.Registers.Count)
        {
            return GdbReplies.NoSuchRegister;
        }

        GdbRegister reg = _target.Registers[(int)n];
        if (args.Length - eq - 1 != reg.Bits / 4 || !GdbText.TryFromHex(args[(eq + 1)..], out byte[] value))
        {
            _log.WriteLine($"gdbserver: P packet for {reg.Name} carries {(args.Length - eq - 1) / 2} bytes; it has {reg.Bits / 8}");
            return GdbReplies.BadRegisterSize;
        }

        _target.WriteRegister((int)n, value);
        return "OK";
    }

    private string ReadMemory(ReadOnlySpan<char> args)
    {
        if (!GdbText.TryRange(args, out ulong address, out ulong length) || length == 0)
        {
            return GdbReplies.Malformed;
        }

        // The reply is two hex digits a byte and must fit in a packet; gdb asks again for the rest.
        byte[] buffer = new byte[Math.Min(length, (ulong)(GdbRemoteServer.MaxPacketSize / 2))];
        int n = _target.ReadMemory(address, buffer);
        return n <= 0 ? GdbReplies.BadMemory : Convert.ToHexStringLower(buffer, 0, n);
    }

    private string WriteMemory(ReadOnlySpan<char> args)
    {
        int colon = args.IndexOf(':');
        if (colon < 0 || !GdbText.TryRange(args[..colon], out ulong address, out ulong length) || !GdbText.TryFromHex(args[(colon + 1)..], out byte[] data))
        {
            return GdbReplies.Malformed;
        }

        if ((ulong)data.Length != length)
        {
            _log.WriteLine($"gdbserver: M packet announces {length} bytes but carries {data.Length}");
            return GdbReplies.Malformed;
        }

        _target.WriteMemory(address, data);
        return "OK";
    }
}
