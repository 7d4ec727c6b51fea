using System.Globalization;
using System.Net.Sockets;
using System.Text;
using VmState.Memory;

namespace VmState.Live;

/// <summary>
/// Guest RAM read through QEMU's own gdbstub in physical-memory mode (<c>Qqemu.PhyMemMode:1</c>, QEMU 7.2
/// gdbstub.c), with GDB remote protocol <c>m</c> packets of up to 2 KiB. Used when QEMU was started with a gdbstub
/// and vmstate has no ptrace rights. QEMU stops a running guest when a gdb client connects, and a byte that arrives
/// while the guest runs only stops it and is dropped (QEMU 7.2 gdb_chr_event, gdb_read_byte). So every access is
/// bracketed over QMP: a running guest is stopped first (never by the stub, which would lose the request) and
/// resumed afterwards. Replies are not acknowledged with '+': in system mode QEMU does not retransmit, and a late
/// '+' arriving after the resume would stop the guest again. Stop notifications ('T'/'S' packets QEMU sends when
/// the guest stops) are skipped.
/// </summary>
public sealed class GdbstubMemory : IPhysicalMemory, IDisposable
{
    private const int MaxRequest = 0x800;
    private const int ReplyTimeoutMs = 10_000;
    private readonly QmpClient _qmp;
    private readonly TcpClient _tcp = null!;
    private readonly NetworkStream _stream = null!;
    private readonly MemoryRange[] _ranges;
    private readonly object _lock = new();

    /// <summary>Connects to the gdbstub at <paramref name="host"/>:<paramref name="port"/> and switches it to physical addresses.</summary>
    public GdbstubMemory(QmpClient qmp, string host, int port, IReadOnlyList<MemoryRange> ranges)
    {
        _qmp = qmp;
        _ranges = [.. ranges];
        Endpoint = $"{host}:{port}";
        bool wasRunning = PauseIfRunning();
        try
        {
            _tcp = new TcpClient(host, port) { NoDelay = true, ReceiveTimeout = ReplyTimeoutMs, SendTimeout = ReplyTimeoutMs };
            _stream = _tcp.GetStream();
            if (Send("Qqemu.PhyMemMode:1") != "OK")
            {
                Dispose();
                throw new IOException($"the gdbstub at {Endpoint} did not switch to physical memory mode");
            }
        }
        finally
        {
            // Connecting stopped the guest (CHR_EVENT_OPENED) even if we had not.
            ResumeIf(wasRunning);
        }
    }

    /// <summary>host:port of the gdbstub.</summary>
    public string Endpoint { get; }

    /// <inheritdoc />
    public string Name => $"QEMU gdbstub {Endpoint}";

    /// <inheritdoc />
    public IReadOnlyList<MemoryRange> Ranges => _ranges;

    /// <summary>The gdbstub's TCP port on QEMU's command line (-gdb tcp:HOST:PORT, -s = 1234), or null.</summary>
    public static (string Host, int Port)? FromCommandLine(int pid)
    {
        string path = $"/proc/{pid}/cmdline";
        if (!File.Exists(path))
        {
            return null;
        }

        string[] args = File.ReadAllText(path).Split('\0');
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "-s")
            {
                return ("127.0.0.1", 1234);
            }

            if (args[i] == "-gdb" && i + 1 < args.Length && args[i + 1].StartsWith("tcp:", StringComparison.Ordinal))
            {
                string spec = args[i + 1][4..].Split(',')[0];
                int colon = spec.LastIndexOf(':');
                if (colon >= 0 && int.TryParse(spec[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port))
                {
                    string host = colon == 0 ? "127.0.0.1" : spec[..colon];
                    return (host, port);
                }
            }
        }

        return null;
    }

    /// <inheritdoc />
    public int Read(ulong address, Span<byte> destination)
    {
        int done = 0;
        lock (_lock)
        {
            bool wasRunning = PauseIfRunning();
            try
            {
                foreach (RangePiece p in _ranges.Pieces(address, destination.Length, MaxRequest))
                {
                    string reply = Send($"m{p.Address:x},{p.Length:x}");
                    if (reply.Length == 0 || reply[0] == 'E' || reply.Length != p.Length * 2)
                    {
                        throw new IOException($"the gdbstub at {Endpoint} could not read 0x{p.Address:x} (+{p.Length}): \"{reply}\"");
                    }

                    Convert.FromHexString(reply).CopyTo(destination.Slice(p.Offset, p.Length));
                    done = p.Offset + p.Length;
                }
            }
            finally
            {
                ResumeIf(wasRunning);
            }
        }

        return done;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        // Closing the connection does not change the run state (QEMU 7.2 handles only CHR_EVENT_OPENED).
        _stream?.Dispose();
        _tcp?.Dispose();
    }

    /// <summary>Stops a running guest over QMP; true when it was running.</summary>
    private bool PauseIfRunning()
    {
        if (_qmp.QueryStatusAsync().GetAwaiter().GetResult() != "running")
        {
            return false;
        }

        _qmp.StopAsync().GetAwaiter().GetResult();
        return true;
    }

    private void ResumeIf(bool wasRunning)
    {
        if (wasRunning)
        {
            _qmp.ContAsync().GetAwaiter().GetResult();
        }
    }

    private string Send(string payload)
    {
        byte sum = 0;
        foreach (char c in payload)
        {
            sum += (byte)c;
        }

        _stream.Write(Encoding.ASCII.GetBytes($"${payload}#{sum:x2}"));
        try
        {
            return ReadReply();
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut })
        {
            throw new IOException($"the gdbstub at {Endpoint} did not answer \"{payload}\" within {ReplyTimeoutMs / 1000} s", e);
        }
    }

    private string ReadReply()
    {
        var sb = new StringBuilder();
        int state = 0;
        while (true)
        {
            int b = _stream.ReadByte();
            if (b < 0)
            {
                throw new IOException($"the gdbstub at {Endpoint} closed the connection");
            }

            char ch = (char)b;
            if (state == 0)
            {
                state = ch == '$' ? 1 : 0;
            }
            else if (state == 1)
            {
                if (ch == '#')
                {
                    state = 2;
                }
                else
                {
                    sb.Append(ch);
                }
            }
            else if (++state == 4)
            {
                string reply = sb.ToString();
                if (reply.Length > 0 && reply[0] is ('T' or 'S'))
                {
                    // A stop notification (QEMU stopped the guest for us), not the reply: read on.
                    sb.Clear();
                    state = 0;
                    continue;
                }

                return reply;
            }
        }
    }
}
