using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using VmState.Arch.X86;
using VmState.Editing;
using VmState.Formats.Migration;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Gdb;

/// <summary>
/// A GDB remote serial protocol server over a snapshot (GDB manual, "Remote Protocol"): registers with a target
/// description that includes segment and control registers, memory by kernel-virtual address (through the
/// selected vCPU's page tables) or, after <c>monitor phys on</c>, by guest-physical address; vCPUs as threads;
/// writes kept in an overlay; <c>monitor save NAME</c> writes a new snapshot carrying them into the save directory.
/// Hostile traffic ends at most the client that sent it: every packet is bounded and parsed without trusting it,
/// and slow or silent clients are timed out (see <see cref="GdbServerOptions"/>).
/// </summary>
public sealed class GdbRemoteServer
{
    /// <summary>The largest packet accepted (announced to gdb as PacketSize); longer ones are answered with an error.</summary>
    public const int MaxPacketSize = 0x8000;

    // Error numbers in replies (gdb shows only that an error happened; the server's log says which).
    private const string Malformed = "E01";
    private const string TooLong = "E02";
    private const string NotAuthenticated = "E03";
    private const string NoSuchThread = "E04";
    private const string BadMemory = "E14";
    private const string BadRegisterSize = "E22";
    private const string NoSuchRegister = "E45";

    // gdb's connection handshake is about 20 packets; a client that sends this many refused ones without
    // authenticating only holds the one client slot.
    private const int MaxUnauthenticatedPackets = 256;

    private readonly MachineState _machine;
    private readonly SnapshotEditor? _editor;
    private readonly IPhysicalMemory _memory;
    private readonly TextWriter _log;
    private readonly GdbServerOptions _options;
    private readonly Dictionary<int, AddressSpace> _spaces = new();
    private int _thread;
    private bool _noAck;
    private bool _authenticated;
    private int _authFailures;
    private int _unauthenticatedPackets;
    private int _busy;

    /// <summary>Serves <paramref name="machine"/> with default options (loopback use: no token, saving disabled).</summary>
    public GdbRemoteServer(MachineState machine, TextWriter log)
        : this(machine, log, new GdbServerOptions())
    {
    }

    /// <summary>Serves <paramref name="machine"/>; writes are possible when it was read from a stream or qcow2 snapshot.</summary>
    public GdbRemoteServer(MachineState machine, TextWriter log, GdbServerOptions options)
    {
        if (machine.Cpus.Count == 0)
        {
            throw new ArgumentException($"{machine.SourcePath} has no vCPU state to debug");
        }

        _machine = machine;
        _log = log;
        _options = options;
        if (machine.Origin is MigrationStreamOrigin)
        {
            _editor = new SnapshotEditor(machine);
            _memory = _editor.Memory;
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

    /// <summary>
    /// Accepts connections on <paramref name="listener"/> (already started) and serves one client at a time. A
    /// client that connects meanwhile waits up to <see cref="GdbServerOptions.QueueTimeout"/> for its turn (so gdb
    /// can reconnect at once after a detach), then is told the server is busy and disconnected; at most
    /// <see cref="GdbServerOptions.MaxQueued"/> wait. Returns when the first client ends if <paramref name="once"/>,
    /// when a client kills the target, or when <paramref name="cancellationToken"/> fires.
    /// </summary>
    public async Task ListenAsync(TcpListener listener, bool once, CancellationToken cancellationToken)
    {
        using var finish = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var turn = new SemaphoreSlim(1, 1);
        var connections = new List<Task>();
        int queued = 0;
        try
        {
            while (true)
            {
                TcpClient client;
                try
                {
                    client = await listener.AcceptTcpClientAsync(finish.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    return;
                }
                catch (SocketException e)
                {
                    // A connection reset before we accepted it (ECONNABORTED) is the client's problem, not ours.
                    _log.WriteLine($"gdbserver: accept failed: {e.Message}");
                    continue;
                }

                connections.RemoveAll(t => t.IsCompleted);
                connections.Add(ConnectionAsync(client));
            }
        }
        finally
        {
            await finish.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(connections).ConfigureAwait(false);
        }

        async Task ConnectionAsync(TcpClient client)
        {
            bool admitted = turn.Wait(0);
            if (!admitted)
            {
                if (Interlocked.Increment(ref queued) <= _options.MaxQueued)
                {
                    try
                    {
                        admitted = await turn.WaitAsync(_options.QueueTimeout, finish.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                    }
                }

                Interlocked.Decrement(ref queued);
            }

            if (!admitted)
            {
                await RefuseAsync(client).ConfigureAwait(false);
                return;
            }

            try
            {
                await ServeClientAsync(client, finish.Token).ConfigureAwait(false);
            }
            finally
            {
                turn.Release();
            }

            if (once || KillRequested)
            {
                await finish.CancelAsync().ConfigureAwait(false);
            }
        }
    }

    private async Task ServeClientAsync(TcpClient client, CancellationToken ct)
    {
        using (client)
        {
            try
            {
                // Both throw when the client has already reset the connection.
                client.NoDelay = true;
                _log.WriteLine($"gdbserver: connection from {client.Client.RemoteEndPoint}");
                await ServeAsync(client.GetStream(), ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException)
            {
                _log.WriteLine($"gdbserver: client went away: {e.Message}");
            }

            _log.WriteLine("gdbserver: connection closed");
        }
    }

    private async Task RefuseAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                _log.WriteLine($"gdbserver: refused {client.Client.RemoteEndPoint}: another client is connected");
                // "E.text" is an error reply with a message (GDB manual, "Standard Replies"); gdb prints it as the
                // answer to its first packet, then sees the connection close.
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await WritePacketAsync(client.GetStream(), "E.another gdb client is connected to this vmstate gdbserver; try again later", timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
            {
            }
        }
    }

    /// <summary>
    /// Serves one connection until the client detaches, kills, disconnects, times out or fails to authenticate.
    /// Only <paramref name="cancellationToken"/> ends it with an exception; a client's misbehaviour ends only that
    /// client. One connection at a time: a second concurrent call is refused.
    /// </summary>
    public async Task ServeAsync(Stream stream, CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _busy, 1) != 0)
        {
            throw new InvalidOperationException("the server is already serving a client");
        }

        try
        {
            _noAck = false;
            _authenticated = _options.Token is null;
            _authFailures = 0;
            _unauthenticatedPackets = 0;
            await ServeLoopAsync(stream, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            _log.WriteLine($"gdbserver: client went away: {e.Message}");
        }
        catch (TimeoutException e)
        {
            _log.WriteLine($"gdbserver: {e.Message}; disconnecting the client");
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    private async Task ServeLoopAsync(Stream stream, CancellationToken ct)
    {
        var reader = new GdbPacketReader(stream, MaxPacketSize);
        DateTime authDeadline = DateTime.UtcNow + _options.AuthTimeout;
        while (true)
        {
            GdbPacket? read;
            using (var idle = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                // Until it authenticates, a client may hold the one client slot only for AuthTimeout.
                TimeSpan left = _authenticated ? _options.IdleTimeout : authDeadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero)
                {
                    throw new TimeoutException($"not authenticated within {_options.AuthTimeout}");
                }

                idle.CancelAfter(left < _options.IdleTimeout ? left : _options.IdleTimeout);
                try
                {
                    read = await reader.ReadAsync(idle.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    throw new TimeoutException(_authenticated || DateTime.UtcNow < authDeadline ? $"no packet for {_options.IdleTimeout}" : $"not authenticated within {_options.AuthTimeout}");
                }
            }

            if (read is not GdbPacket packet)
            {
                return;
            }

            switch (packet.Kind)
            {
                case GdbPacketKind.Interrupt:
                    await SendAsync(stream, StopReply(), ct).ConfigureAwait(false);
                    continue;
                case GdbPacketKind.BadChecksum:
                    _log.WriteLine("gdbserver: packet with a bad checksum");
                    if (!_noAck)
                    {
                        await SendRawAsync(stream, "-"u8.ToArray(), ct).ConfigureAwait(false);
                    }

                    continue;
                case GdbPacketKind.TooLong:
                case GdbPacketKind.Malformed:
                    _log.WriteLine(packet.Kind == GdbPacketKind.TooLong ? $"gdbserver: packet longer than {MaxPacketSize} bytes discarded" : "gdbserver: packet ends inside an escape");
                    await AckAsync(stream, ct).ConfigureAwait(false);
                    await SendAsync(stream, packet.Kind == GdbPacketKind.TooLong ? TooLong : Malformed, ct).ConfigureAwait(false);
                    continue;
            }

            string p = packet.Payload;
            await AckAsync(stream, ct).ConfigureAwait(false);
            Answer answer;
            try
            {
                answer = _authenticated ? Handle(p, ct) : HandleUnauthenticated(p);
            }
            catch (Exception e) when (e is VmStateException or ArgumentException or FormatException or InvalidOperationException or IOException or OverflowException or UnauthorizedAccessException)
            {
                _log.WriteLine($"gdbserver: {Printable(p.Split(':')[0])}: {e.Message}");
                answer = new Answer(Malformed);
            }

            if (answer.Output is not null)
            {
                await SendAsync(stream, "O" + Convert.ToHexStringLower(Encoding.UTF8.GetBytes(answer.Output + "\n")), ct).ConfigureAwait(false);
            }

            await SendAsync(stream, answer.Reply, ct).ConfigureAwait(false);
            if (p == "QStartNoAckMode")
            {
                _noAck = true;
            }

            if (answer.End)
            {
                return;
            }
        }
    }

    private Task AckAsync(Stream stream, CancellationToken ct) => _noAck ? Task.CompletedTask : SendRawAsync(stream, "+"u8.ToArray(), ct);

    /// <summary>A reply, console output to show before it (O packet), and whether the connection ends after it.</summary>
    private readonly record struct Answer(string Reply, string? Output = null, bool End = false);

    /// <summary>
    /// Before <c>monitor auth TOKEN</c>: gdb's connection handshake is answered so that gdb connects and the user
    /// can type the monitor command (gdb sends none before it is connected), but nothing about the guest is
    /// revealed: registers read as zeros; memory, writes, other monitor commands and saving are refused.
    /// </summary>
    private Answer HandleUnauthenticated(string p)
    {
        if (p.StartsWith("qRcmd,", StringComparison.Ordinal))
        {
            string command;
            try
            {
                command = DecodeMonitorCommand(p["qRcmd,".Length..]);
            }
            catch (FormatException)
            {
                return Refuse(null);
            }

            string[] words = command.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries);
            if (words.Length == 2 && words[0] == "auth")
            {
                if (TokenMatches(words[1]))
                {
                    _authenticated = true;
                    _log.WriteLine("gdbserver: client authenticated");
                    return new Answer("OK", "authenticated; run 'maintenance flush register-cache' (flushregs) to load the registers");
                }

                _log.WriteLine("gdbserver: wrong token");
                return Refuse("wrong token");
            }

            return Refuse("authentication required: monitor auth TOKEN");
        }

        switch (p)
        {
            case "":
                return new Answer(Malformed);
            case "g":
                // Zeros, not 'x' (unavailable): gdb 13 gives up the connection when the PC is unavailable, and the
                // user could then never type 'monitor auth'.
                return new Answer(new string('0', X86TargetDescription.Registers.Sum(r => r.Bits / 4)));
            case "?":
            case "QStartNoAckMode":
            case "vMustReplyEmpty":
            case "qAttached":
            case "qfThreadInfo":
            case "qsThreadInfo":
            case "qC":
            case "D":
                return Handle(p, CancellationToken.None);
            case "k":
                // Ends this connection only: an unauthenticated client must not stop the server for everyone.
                return new Answer(string.Empty, End: true);
        }

        if (p.StartsWith("qSupported", StringComparison.Ordinal) || p.StartsWith("qXfer:features:read:", StringComparison.Ordinal)
            || p[0] == 'H' || p.StartsWith("qTStatus", StringComparison.Ordinal) || p.StartsWith("qOffsets", StringComparison.Ordinal)
            || p.StartsWith("qSymbol", StringComparison.Ordinal) || p.StartsWith("vCont?", StringComparison.Ordinal))
        {
            return Handle(p, CancellationToken.None);
        }

        // Reads are what gdb itself sends after connecting (the frame at the zero PC): refused without counting,
        // so the user can still authenticate. Anything else is a client that is not gdb waiting for 'monitor auth'.
        return Refuse(null, counted: p[0] is not ('m' or 'p') && !p.StartsWith("qThreadExtraInfo", StringComparison.Ordinal));
    }

    private Answer Refuse(string? message, bool counted = true)
    {
        if (counted)
        {
            _authFailures++;
        }

        if (_authFailures >= _options.MaxAuthFailures || ++_unauthenticatedPackets > MaxUnauthenticatedPackets)
        {
            _log.WriteLine($"gdbserver: {_authFailures} wrong tokens or refused packets, {_unauthenticatedPackets} packets in all, before authentication; disconnecting");
            return new Answer(NotAuthenticated, message is null ? null : message + "; disconnecting", End: true);
        }

        return new Answer(NotAuthenticated, message);
    }

    private bool TokenMatches(string given)
    {
        // Hashing first makes both sides the same length, so the comparison time says nothing about the token's
        // length either; FixedTimeEquals then compares without an early exit.
        byte[] a = SHA256.HashData(Encoding.UTF8.GetBytes(given));
        byte[] b = SHA256.HashData(Encoding.UTF8.GetBytes(_options.Token!));
        return CryptographicOperations.FixedTimeEquals(a, b);
    }

    private Answer Handle(string p, CancellationToken ct)
    {
        if (p.Length == 0)
        {
            return new Answer(Malformed);
        }

        switch (p[0])
        {
            case '?':
                return new Answer(StopReply());
            case 'g':
                return new Answer(p.Length == 1 ? ReadAllRegisters() : Malformed);
            case 'G':
                return new Answer(WriteAllRegisters(p.AsSpan(1)));
            case 'p':
                return new Answer(TryHex(p.AsSpan(1), out ulong pn) && pn < (ulong)X86TargetDescription.Registers.Count ? ReadRegister((int)pn) : NoSuchRegister);
            case 'P':
                return new Answer(WriteRegisterPacket(p.AsSpan(1)));
            case 'm':
                return new Answer(ReadMemory(p.AsSpan(1)));
            case 'M':
                return new Answer(WriteMemory(p.AsSpan(1)));
            case 'H':
                return new Answer(SetThread(p.AsSpan(1)));
            case 'T':
                return new Answer(ParseThread(p.AsSpan(1)) is int x && x >= 0 ? "OK" : NoSuchThread);
            case 'c':
            case 's':
            case 'C':
            case 'S':
                _log.WriteLine("gdbserver: a snapshot cannot run; reporting a stop instead");
                return new Answer(StopReply());
            case 'D':
                return new Answer("OK", End: true);
            case 'k':
                KillRequested = true;
                return new Answer(string.Empty, End: true);
            case 'q':
            case 'Q':
                return Query(p, ct);
            default:
                // 'v' packets (vCont, vMustReplyEmpty, vFile…), 'X', 'Z' (breakpoints) and the rest: not supported,
                // which the protocol says to answer with an empty packet.
                return new Answer(string.Empty);
        }
    }

    private Answer Query(string p, CancellationToken ct)
    {
        if (p.StartsWith("qSupported", StringComparison.Ordinal))
        {
            return new Answer($"PacketSize={MaxPacketSize:x};qXfer:features:read+;QStartNoAckMode+");
        }

        if (p == "QStartNoAckMode")
        {
            return new Answer("OK");
        }

        if (p.StartsWith("qXfer:features:read:", StringComparison.Ordinal))
        {
            return new Answer(ReadTargetDescription(p.AsSpan("qXfer:features:read:".Length)));
        }

        if (p == "qfThreadInfo")
        {
            return new Answer("m" + string.Join(',', Enumerable.Range(0, _machine.Cpus.Count).Select(i => (i + 1).ToString("x", CultureInfo.InvariantCulture))));
        }

        if (p == "qsThreadInfo")
        {
            return new Answer("l");
        }

        if (p == "qC")
        {
            return new Answer($"QC{_thread + 1:x}");
        }

        if (p == "qAttached")
        {
            return new Answer("1");
        }

        if (p.StartsWith("qThreadExtraInfo,", StringComparison.Ordinal))
        {
            if (ParseThread(p.AsSpan("qThreadExtraInfo,".Length)) is not int t || t < 0)
            {
                return new Answer(NoSuchThread);
            }

            string text = $"vCPU {_machine.Cpus[t].Index}, CR3 0x{_machine.Cpus[t].Cr3:x}";
            return new Answer(Convert.ToHexStringLower(Encoding.ASCII.GetBytes(text)));
        }

        if (p.StartsWith("qRcmd,", StringComparison.Ordinal))
        {
            (string output, bool ok) = Monitor(DecodeMonitorCommand(p["qRcmd,".Length..]).Trim(), ct);
            return new Answer(ok ? "OK" : Malformed, output);
        }

        if (p.StartsWith("qSymbol", StringComparison.Ordinal))
        {
            return new Answer("OK");
        }

        return new Answer(string.Empty);
    }

    private static string ReadTargetDescription(ReadOnlySpan<char> args)
    {
        // qXfer:features:read:ANNEX:OFFSET,LENGTH (GDB manual, "General Query Packets").
        int colon = args.IndexOf(':');
        if (colon < 0 || !args[..colon].SequenceEqual("target.xml"))
        {
            // E00 is what the manual prescribes for an annex that does not exist.
            return colon < 0 ? Malformed : "E00";
        }

        if (!TryRange(args[(colon + 1)..], out ulong offset, out ulong length))
        {
            return Malformed;
        }

        string xml = X86TargetDescription.Xml;
        if (offset >= (ulong)xml.Length)
        {
            return "l";
        }

        // Escaping can double a character, so at most half a packet of the document goes into one reply.
        int take = (int)Math.Min(Math.Min(length, (ulong)(MaxPacketSize / 2 - 2)), (ulong)xml.Length - offset);
        string chunk = xml.Substring((int)offset, take);
        return ((int)offset + chunk.Length >= xml.Length ? "l" : "m") + Escape(chunk);
    }

    private static string DecodeMonitorCommand(string hex)
    {
        if (hex.Length % 2 != 0 || !TryFromHex(hex, out byte[] bytes))
        {
            throw new FormatException("qRcmd carries no hex-encoded command");
        }

        return Encoding.UTF8.GetString(bytes);
    }

    private (string Output, bool Ok) Monitor(string command, CancellationToken ct)
    {
        string[] words = command.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries);
        switch (words.Length > 0 ? words[0] : string.Empty)
        {
            case "phys":
                if (words.Length == 2 && words[1] is "on" or "off")
                {
                    PhysicalMode = words[1] == "on";
                }

                return ($"memory addresses are {(PhysicalMode ? "guest-physical" : "virtual (page tables of the selected vCPU)")}", true);
            case "save":
                return Save(words.Length == 2 ? words[1].Trim() : null, ct);
            case "edits":
                return (Edits.Count == 0 ? "no edits" : string.Join('\n', Edits), true);
            case "auth":
                return ("already authenticated", true);
            default:
                return ("vmstate gdbserver monitor commands:\n  phys on|off  memory addresses are guest-physical / virtual\n  save NAME    write a new snapshot with the changes made, as NAME in the server's save directory\n  edits        list the changes made\n  auth TOKEN   authenticate (servers started with --token)", true);
        }
    }

    private (string Output, bool Ok) Save(string? name, CancellationToken ct)
    {
        if (_editor is null)
        {
            return ($"cannot save: {_machine.SourcePath} is a {_machine.Origin.Description}; only migration streams and qcow2 snapshots can be written", false);
        }

        if (_options.SaveDirectory is not Export.SaveDirectory directory)
        {
            return ("saving is disabled: start vmstate gdbserver with --save-dir DIR to allow 'monitor save NAME' to write NAME in DIR", false);
        }

        if (name is null)
        {
            return ($"usage: monitor save NAME (a file name; it is written in {directory.Path})", false);
        }

        try
        {
            long bytes = 0;
            string path = directory.Write(name, output => bytes = _editor.Stream.WriteTo(output, ct));
            _log.WriteLine($"gdbserver: saved {path}");
            return ($"saved {path} as a migration stream ({bytes} bytes, {_editor.Stream.EditedPages} pages and {_editor.Stream.EditedFields} fields changed)", true);
        }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException)
        {
            // The overlay is untouched by a failed save: the user can fix the cause and save again.
            _log.WriteLine($"gdbserver: save {Printable(name)} failed: {e.Message}");
            return ($"{e.Message}\nnothing was saved; the {Edits.Count} edits are kept", false);
        }
    }

    private string StopReply() => $"T05thread:{_thread + 1:x};";

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

        if (!TryHex(text, out ulong id) || id == 0 || id > (ulong)_machine.Cpus.Count)
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
            return NoSuchThread;
        }

        if (args[0] == 'g' && t >= 0)
        {
            _thread = t;
        }

        return "OK";
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
        X86Register reg = X86Registers.Gdb[n];
        byte[] value = new byte[reg.Gdb!.Bits / 8];
        reg.Read(Cpu, value);
        return Convert.ToHexStringLower(value);
    }

    private string WriteAllRegisters(ReadOnlySpan<char> hex)
    {
        // The G packet carries the whole block in 'g' order; anything shorter or longer would shift every register
        // after the mismatch, so it is refused before anything is written.
        int expected = X86TargetDescription.Registers.Sum(r => r.Bits / 8);
        if (hex.Length != expected * 2 || !TryFromHex(hex, out byte[] all))
        {
            _log.WriteLine($"gdbserver: G packet carries {hex.Length / 2} bytes; the register block has {expected}");
            return BadRegisterSize;
        }

        // Only the registers that change are written, and all of them must be writable before the first is.
        var changes = new List<(int Index, byte[] Value)>();
        int at = 0;
        for (int i = 0; i < X86TargetDescription.Registers.Count; i++)
        {
            int size = X86TargetDescription.Registers[i].Bits / 8;
            byte[] value = all.AsSpan(at, size).ToArray();
            if (ReadRegister(i) != Convert.ToHexStringLower(value))
            {
                changes.Add((i, value));
            }

            at += size;
        }

        foreach ((int index, _) in changes)
        {
            CheckWritable(index);
        }

        foreach ((int index, byte[] value) in changes)
        {
            WriteRegister(index, value);
        }

        return "OK";
    }

    private string WriteRegisterPacket(ReadOnlySpan<char> args)
    {
        // P n=value, the value in target byte order and exactly the register's size.
        int eq = args.IndexOf('=');
        if (eq < 0 || !TryHex(args[..eq], out ulong n))
        {
            return Malformed;
        }

        if (n >= (ulong)X86TargetDescription.Registers.Count)
        {
            return NoSuchRegister;
        }

        GdbRegister reg = X86TargetDescription.Registers[(int)n];
        if (args.Length - eq - 1 != reg.Bits / 4 || !TryFromHex(args[(eq + 1)..], out byte[] value))
        {
            _log.WriteLine($"gdbserver: P packet for {reg.Name} carries {(args.Length - eq - 1) / 2} bytes; it has {reg.Bits / 8}");
            return BadRegisterSize;
        }

        CheckWritable((int)n);
        WriteRegister((int)n, value);
        return "OK";
    }

    private void CheckWritable(int n)
    {
        X86Register reg = X86Registers.Gdb[n];
        if (_editor is null)
        {
            throw new InvalidOperationException($"{_machine.Origin.Description} inputs are read-only");
        }

        if (!reg.Editable)
        {
            throw new ArgumentException($"writing {reg.Gdb!.Name} is not supported");
        }
    }

    private void WriteRegister(int n, byte[] value)
    {
        // The table's name, not gdb's: the editor knows eflags as rflags and k_gs_base as kernel_gs_base.
        X86Register reg = X86Registers.Gdb[n];
        Span<byte> tmp = stackalloc byte[8];
        tmp.Clear();
        value.CopyTo(tmp);
        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(tmp);
        X86CpuState c = Cpu;
        _editor!.SetRegister(c.Index, reg.Name, v);
        reg.Set(c, v);
        _spaces.Remove(_thread);
    }

    private string ReadMemory(ReadOnlySpan<char> args)
    {
        if (!TryRange(args, out ulong address, out ulong length) || length == 0)
        {
            return Malformed;
        }

        // The reply is two hex digits a byte and must fit in a packet; gdb asks again for the rest.
        byte[] buffer = new byte[Math.Min(length, (ulong)(MaxPacketSize / 2))];
        int n = PhysicalMode ? _memory.Read(address, buffer) : Space().Read(address, buffer);
        return n <= 0 ? BadMemory : Convert.ToHexStringLower(buffer, 0, n);
    }

    private string WriteMemory(ReadOnlySpan<char> args)
    {
        int colon = args.IndexOf(':');
        if (colon < 0 || !TryRange(args[..colon], out ulong address, out ulong length) || !TryFromHex(args[(colon + 1)..], out byte[] data))
        {
            return Malformed;
        }

        if ((ulong)data.Length != length)
        {
            _log.WriteLine($"gdbserver: M packet announces {length} bytes but carries {data.Length}");
            return Malformed;
        }

        if (_editor is null)
        {
            throw new InvalidOperationException($"{_machine.Origin.Description} inputs are read-only");
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

        return "OK";
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

    /// <summary>"ADDR,LENGTH" in hex.</summary>
    private static bool TryRange(ReadOnlySpan<char> text, out ulong address, out ulong length)
    {
        address = 0;
        length = 0;
        int comma = text.IndexOf(',');
        return comma >= 0 && TryHex(text[..comma], out address) && TryHex(text[(comma + 1)..], out length);
    }

    /// <summary>Hex digits only: no sign, no spaces, no 0x, at most 16 digits (64 bits).</summary>
    private static bool TryHex(ReadOnlySpan<char> text, out ulong value) =>
        ulong.TryParse(text, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);

    private static bool TryFromHex(ReadOnlySpan<char> text, out byte[] bytes)
    {
        bytes = [];
        if (text.Length % 2 != 0)
        {
            return false;
        }

        byte[] result = new byte[text.Length / 2];
        if (Convert.FromHexString(text, result, out _, out int written) != System.Buffers.OperationStatus.Done || written != result.Length)
        {
            return false;
        }

        bytes = result;
        return true;
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

    /// <summary>Client text made safe for the log (no control characters, bounded length).</summary>
    private static string Printable(string text)
    {
        var sb = new StringBuilder();
        foreach (char c in text.Length > 80 ? text[..80] : text)
        {
            sb.Append(c is < ' ' or > '~' ? '?' : c);
        }

        return text.Length > 80 ? sb.Append('…').ToString() : sb.ToString();
    }

    private Task SendAsync(Stream stream, string payload, CancellationToken ct) => SendRawAsync(stream, Frame(payload), ct);

    private async Task SendRawAsync(Stream stream, byte[] bytes, CancellationToken ct)
    {
        // A client that stops reading fills the socket buffers, and the write would wait forever.
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.WriteTimeout);
        try
        {
            await stream.WriteAsync(bytes, timeout.Token).ConfigureAwait(false);
            await stream.FlushAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"the client did not take a reply within {_options.WriteTimeout}");
        }
    }

    private static async Task WritePacketAsync(Stream stream, string payload, CancellationToken ct)
    {
        await stream.WriteAsync(Frame(payload), ct).ConfigureAwait(false);
        await stream.FlushAsync(ct).ConfigureAwait(false);
    }

    private static byte[] Frame(string payload)
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
        return packet;
    }
}
