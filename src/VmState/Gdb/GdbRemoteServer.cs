using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using VmState.Arch.X86;
using VmState.Formats.Migration;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Gdb;

/// <summary>
/// A GDB remote serial protocol server over a snapshot (GDB manual, "Remote Protocol"): registers with a target
/// description that includes segment and control registers, memory by kernel-virtual address (through the
/// selected vCPU's page tables) or, after <c>monitor phys on</c>, by guest-physical address; vCPUs as threads;
/// writes kept in an overlay; <c>monitor save FILE</c> writes a new snapshot carrying them.
/// </summary>
public sealed class GdbRemoteServer
{
    private const int MaxPacket = 0x4000;
    private readonly MachineState _machine;
    private readonly SnapshotEditor? _editor;
    private readonly IPhysicalMemory _memory;
    private readonly TextWriter _log;
    private readonly Dictionary<int, AddressSpace> _spaces = new();
    private int _thread;
    private bool _noAck;

    /// <summary>Serves <paramref name="machine"/>; writes are possible when it was read from a stream or qcow2 snapshot.</summary>
    public GdbRemoteServer(MachineState machine, TextWriter log)
    {
        if (machine.Cpus.Count == 0)
        {
            throw new ArgumentException($"{machine.SourcePath} has no vCPU state to debug");
        }

        _machine = machine;
        _log = log;
        if (machine.Stream is not null)
        {
            _editor = new SnapshotEditor(machine);
            _memory = new OverlayMemory(machine.Memory, _editor.Stream);
        }
        else
        {
            _memory = machine.Memory;
        }
    }

    /// <summary>Memory addresses are guest-physical (true) or virtual through the selected vCPU's page tables.</summary>
    public bool PhysicalMode { get; set; }

    /// <summary>Set when the client asked to kill the target (the server may exit).</summary>
    public bool KillRequested { get; private set; }

    /// <summary>Edits made so far (memory and registers).</summary>
    public IReadOnlyList<string> Edits => _editor?.Log ?? [];

    /// <summary>Serves one connection until the client detaches, kills or disconnects.</summary>
    public async Task ServeAsync(Stream stream, CancellationToken cancellationToken)
    {
        _noAck = false;
        var reader = new PacketReader(stream);
        while (!cancellationToken.IsCancellationRequested)
        {
            string? packet = await reader.ReadPacketAsync(cancellationToken).ConfigureAwait(false);
            if (packet is null)
            {
                return;
            }

            if (packet == "\u0003")
            {
                await SendAsync(stream, StopReply(), cancellationToken).ConfigureAwait(false);
                continue;
            }

            if (!_noAck)
            {
                await stream.WriteAsync("+"u8.ToArray(), cancellationToken).ConfigureAwait(false);
            }

            string reply;
            bool end = false;
            try
            {
                (reply, end) = await HandleAsync(stream, packet, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException or IOException or OverflowException)
            {
                _log.WriteLine($"gdbserver: {packet.Split(':')[0]}: {e.Message}");
                reply = "E01";
            }

            await SendAsync(stream, reply, cancellationToken).ConfigureAwait(false);
            if (packet == "QStartNoAckMode")
            {
                _noAck = true;
            }

            if (end)
            {
                return;
            }
        }
    }

    private async Task<(string Reply, bool End)> HandleAsync(Stream stream, string p, CancellationToken ct)
    {
        switch (p[0])
        {
            case '?':
                return (StopReply(), false);
            case 'g':
                return (ReadAllRegisters(), false);
            case 'G':
                WriteAllRegisters(p[1..]);
                return ("OK", false);
            case 'p':
                return (ReadRegister(int.Parse(p[1..], NumberStyles.HexNumber, CultureInfo.InvariantCulture)), false);
            case 'P':
                int eq = p.IndexOf('=', StringComparison.Ordinal);
                WriteRegister(int.Parse(p[1..eq], NumberStyles.HexNumber, CultureInfo.InvariantCulture), Convert.FromHexString(p[(eq + 1)..]));
                return ("OK", false);
            case 'm':
                return (ReadMemory(p[1..]), false);
            case 'M':
                WriteMemory(p[1..]);
                return ("OK", false);
            case 'H':
                int t = ParseThread(p[2..]);
                if (t >= 0)
                {
                    _thread = t;
                }

                return ("OK", false);
            case 'T':
                return (ParseThread(p[1..]) is int x && x >= 0 && x < _machine.Cpus.Count ? "OK" : "E01", false);
            case 'c':
            case 's':
            case 'C':
            case 'S':
                _log.WriteLine("gdbserver: a snapshot cannot run; reporting a stop instead");
                return (StopReply(), false);
            case 'D':
                return ("OK", true);
            case 'k':
                KillRequested = true;
                return (string.Empty, true);
            case 'q':
            case 'Q':
                return (await QueryAsync(stream, p, ct).ConfigureAwait(false), false);
            default:
                // 'v' packets (vCont, vMustReplyEmpty, vFile…), 'X', 'Z' (breakpoints) and the rest: not supported.
                return (string.Empty, false);
        }
    }

    private async Task<string> QueryAsync(Stream stream, string p, CancellationToken ct)
    {
        if (p.StartsWith("qSupported", StringComparison.Ordinal))
        {
            return $"PacketSize={MaxPacket:x};qXfer:features:read+;QStartNoAckMode+";
        }

        if (p == "QStartNoAckMode")
        {
            return "OK";
        }

        if (p.StartsWith("qXfer:features:read:target.xml:", StringComparison.Ordinal))
        {
            string[] range = p["qXfer:features:read:target.xml:".Length..].Split(',');
            int offset = int.Parse(range[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            int length = int.Parse(range[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            string xml = X86TargetDescription.Xml;
            if (offset >= xml.Length)
            {
                return "l";
            }

            string chunk = xml.Substring(offset, Math.Min(length, xml.Length - offset));
            return (offset + chunk.Length >= xml.Length ? "l" : "m") + Escape(chunk);
        }

        if (p == "qfThreadInfo")
        {
            return "m" + string.Join(',', Enumerable.Range(0, _machine.Cpus.Count).Select(i => (i + 1).ToString("x", CultureInfo.InvariantCulture)));
        }

        if (p == "qsThreadInfo")
        {
            return "l";
        }

        if (p == "qC")
        {
            return $"QC{_thread + 1:x}";
        }

        if (p == "qAttached")
        {
            return "1";
        }

        if (p.StartsWith("qThreadExtraInfo,", StringComparison.Ordinal))
        {
            int t = ParseThread(p["qThreadExtraInfo,".Length..]);
            string text = t >= 0 && t < _machine.Cpus.Count ? $"vCPU {_machine.Cpus[t].Index}, CR3 0x{_machine.Cpus[t].Cr3:x}" : "?";
            return Convert.ToHexStringLower(Encoding.ASCII.GetBytes(text));
        }

        if (p.StartsWith("qRcmd,", StringComparison.Ordinal))
        {
            string command = Encoding.ASCII.GetString(Convert.FromHexString(p["qRcmd,".Length..]));
            string output = Monitor(command.Trim(), ct);
            await SendAsync(stream, "O" + Convert.ToHexStringLower(Encoding.UTF8.GetBytes(output + "\n")), ct).ConfigureAwait(false);
            return "OK";
        }

        if (p.StartsWith("qSymbol", StringComparison.Ordinal))
        {
            return "OK";
        }

        return string.Empty;
    }

    private string Monitor(string command, CancellationToken ct)
    {
        string[] words = command.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries);
        switch (words.Length > 0 ? words[0] : string.Empty)
        {
            case "phys":
                if (words.Length == 2 && words[1] is "on" or "off")
                {
                    PhysicalMode = words[1] == "on";
                }

                return $"memory addresses are {(PhysicalMode ? "guest-physical" : "virtual (page tables of the selected vCPU)")}";
            case "save":
                if (_editor is null)
                {
                    return $"cannot save: {_machine.SourcePath} is a {_machine.SourceFormat}; only migration streams and qcow2 snapshots can be written";
                }

                if (words.Length < 2)
                {
                    return "usage: monitor save FILE";
                }

                long bytes = _editor.Save(words[1], ct);
                return $"saved {words[1]} ({bytes} bytes, {_editor.Stream.EditedPages} pages and {_editor.Stream.EditedFields} fields changed)";
            case "edits":
                return Edits.Count == 0 ? "no edits" : string.Join('\n', Edits);
            default:
                return "vmstate gdbserver monitor commands:\n  phys on|off  memory addresses are guest-physical / virtual\n  save FILE    write a new snapshot with the changes made\n  edits        list the changes made";
        }
    }

    private string StopReply() => $"T05thread:{_thread + 1:x};";

    private int ParseThread(string text)
    {
        if (text is "-1" or "0")
        {
            return -1;
        }

        return int.Parse(text, NumberStyles.HexNumber, CultureInfo.InvariantCulture) - 1;
    }

    private X86CpuState Cpu => _machine.Cpus[Math.Clamp(_thread, 0, _machine.Cpus.Count - 1)];

    private string ReadAllRegisters()
    {
        var sb = new StringBuilder();
        for (int i = 0; i < X86TargetDescription.Registers.Count; i++)
        {
            sb.Append(ReadRegister(i));
        }

        return sb.ToString();
    }

    private string ReadRegister(int n)
    {
        if (n < 0 || n >= X86TargetDescription.Registers.Count)
        {
            return "E45";
        }

        GdbRegister reg = X86TargetDescription.Registers[n];
        byte[] value = new byte[reg.Bits / 8];
        X86CpuState c = Cpu;
        ulong v = reg.Name switch
        {
            "eflags" => c.Rflags,
            "fctrl" => c.Fcw,
            "fstat" => c.Fsw,
            "mxcsr" => c.Mxcsr,
            "k_gs_base" => c.KernelGsBase,
            _ => c.GetRegister(reg.Name) ?? 0,
        };
        if (reg.Name.StartsWith("xmm", StringComparison.Ordinal))
        {
            int x = int.Parse(reg.Name[3..], CultureInfo.InvariantCulture);
            c.Xmm.AsSpan(x * 16, 16).CopyTo(value);
        }
        else if (value.Length <= 8)
        {
            Span<byte> tmp = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(tmp, v);
            tmp[..value.Length].CopyTo(value);
        }

        return Convert.ToHexStringLower(value);
    }

    private void WriteAllRegisters(string hex)
    {
        byte[] all = Convert.FromHexString(hex);
        int at = 0;
        for (int i = 0; i < X86TargetDescription.Registers.Count && at < all.Length; i++)
        {
            int size = X86TargetDescription.Registers[i].Bits / 8;
            byte[] value = all.AsSpan(at, Math.Min(size, all.Length - at)).ToArray();
            if (ReadRegister(i) != Convert.ToHexStringLower(value))
            {
                WriteRegister(i, value);
            }

            at += size;
        }
    }

    private void WriteRegister(int n, byte[] value)
    {
        if (n < 0 || n >= X86TargetDescription.Registers.Count)
        {
            throw new ArgumentException($"register {n} does not exist");
        }

        GdbRegister reg = X86TargetDescription.Registers[n];
        if (_editor is null)
        {
            throw new InvalidOperationException($"{_machine.SourceFormat} inputs are read-only");
        }

        if (value.Length > 8)
        {
            throw new ArgumentException($"writing {reg.Name} is not supported");
        }

        Span<byte> tmp = stackalloc byte[8];
        tmp.Clear();
        value.CopyTo(tmp);
        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(tmp);
        string name = reg.Name switch
        {
            "eflags" => "rflags",
            "k_gs_base" => "kernel_gs_base",
            _ => reg.Name,
        };
        X86CpuState c = Cpu;
        _editor.SetRegister(c.Index, name, v);
        ApplyToState(c, name, v);
        _spaces.Remove(_thread);
    }

    private static void ApplyToState(X86CpuState c, string name, ulong v)
    {
        int gi = Array.IndexOf(X86CpuState.GeneralRegisterNames, name);
        if (gi >= 0)
        {
            c.Regs[gi] = v;
            return;
        }

        int si = Array.IndexOf(X86CpuState.SegmentNames, name.EndsWith("_base", StringComparison.Ordinal) ? name[..^5] : name);
        if (si >= 0)
        {
            c.Segments[si] = name.EndsWith("_base", StringComparison.Ordinal) ? c.Segments[si] with { Base = v } : c.Segments[si] with { Selector = (uint)v };
            return;
        }

        switch (name)
        {
            case "rip": c.Rip = v; break;
            case "rflags": c.Rflags = v; break;
            case "cr0": c.Cr0 = v; break;
            case "cr2": c.Cr2 = v; break;
            case "cr3": c.Cr3 = v; break;
            case "cr4": c.Cr4 = v; break;
            case "efer": c.Efer = v; break;
            case "kernel_gs_base": c.KernelGsBase = v; break;
        }
    }

    private string ReadMemory(string args)
    {
        (ulong address, int length) = ParseRange(args);
        byte[] buffer = new byte[Math.Min(length, MaxPacket / 2)];
        int n = PhysicalMode ? _memory.Read(address, buffer) : Space().Read(address, buffer);
        return n == 0 ? "E14" : Convert.ToHexStringLower(buffer, 0, n);
    }

    private void WriteMemory(string args)
    {
        int colon = args.IndexOf(':', StringComparison.Ordinal);
        (ulong address, int length) = ParseRange(args[..colon]);
        byte[] data = Convert.FromHexString(args[(colon + 1)..]);
        if (data.Length != length)
        {
            throw new FormatException($"M packet announces {length} bytes but carries {data.Length}");
        }

        if (_editor is null)
        {
            throw new InvalidOperationException($"{_machine.SourceFormat} inputs are read-only");
        }

        if (PhysicalMode)
        {
            _editor.WritePhysical(address, data);
        }
        else
        {
            _editor.WriteVirtual(address, data, Cpu.Index);
        }

        // Page tables may have changed.
        foreach (AddressSpace s in _spaces.Values)
        {
            s.Invalidate();
        }
    }

    private AddressSpace Space()
    {
        if (!_spaces.TryGetValue(_thread, out AddressSpace? space))
        {
            space = AddressSpace.Of(_memory, Cpu);
            _spaces[_thread] = space;
        }

        return space;
    }

    private static (ulong Address, int Length) ParseRange(string text)
    {
        string[] parts = text.Split(',');
        return (ulong.Parse(parts[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture), int.Parse(parts[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
    }

    private static string Escape(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (char ch in text)
        {
            if (ch is '#' or '$' or '}' or '*')
            {
                sb.Append('}').Append((char)(ch ^ 0x20));
            }
            else
            {
                sb.Append(ch);
            }
        }

        return sb.ToString();
    }

    private static async Task SendAsync(Stream stream, string payload, CancellationToken ct)
    {
        byte[] body = Encoding.Latin1.GetBytes(payload);
        byte sum = 0;
        foreach (byte b in body)
        {
            sum += b;
        }

        byte[] packet = new byte[body.Length + 4];
        packet[0] = (byte)'$';
        body.CopyTo(packet, 1);
        packet[^3] = (byte)'#';
        packet[^2] = (byte)"0123456789abcdef"[sum >> 4];
        packet[^1] = (byte)"0123456789abcdef"[sum & 15];
        await stream.WriteAsync(packet, ct).ConfigureAwait(false);
        await stream.FlushAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Physical memory reads that see the edits made so far.</summary>
    private sealed class OverlayMemory(IPhysicalMemory inner, MigrationStreamEditor editor) : IPhysicalMemory
    {
        public string Name => inner.Name;

        public IReadOnlyList<MemoryRange> Ranges => inner.Ranges;

        public int Read(ulong address, Span<byte> destination)
        {
            int done = 0;
            foreach (RangePiece p in inner.Ranges.Pieces(address, destination.Length))
            {
                editor.ReadPhysical(p.Address, destination.Slice(p.Offset, p.Length));
                done = p.Offset + p.Length;
            }

            return done;
        }
    }

    /// <summary>Reads RSP packets: "$…#cs" (checksums are not enforced: the transport is reliable), acks and ^C.</summary>
    private sealed class PacketReader(Stream stream)
    {
        private readonly byte[] _buffer = new byte[MaxPacket * 2];
        private int _start;
        private int _end;

        public async Task<string?> ReadPacketAsync(CancellationToken ct)
        {
            var packet = new StringBuilder();
            bool inPacket = false;
            int checksum = -1;
            while (true)
            {
                if (_start == _end)
                {
                    _start = 0;
                    _end = await stream.ReadAsync(_buffer, ct).ConfigureAwait(false);
                    if (_end == 0)
                    {
                        return null;
                    }
                }

                byte b = _buffer[_start++];
                if (checksum >= 0)
                {
                    if (++checksum == 3)
                    {
                        return packet.ToString();
                    }

                    continue;
                }

                if (!inPacket)
                {
                    if (b == 0x03)
                    {
                        return "\u0003";
                    }

                    inPacket = b == '$';
                    continue;
                }

                if (b == '#')
                {
                    checksum = 1;
                    continue;
                }

                if (packet.Length > MaxPacket * 2)
                {
                    throw new IOException("gdb packet too long");
                }

                packet.Append((char)b);
            }
        }
    }
}
