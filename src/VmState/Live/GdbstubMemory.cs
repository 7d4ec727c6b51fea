using System.Globalization;
using System.Net.Sockets;
using System.Text;
using VmState.Memory;

namespace VmState.Live;

/// <summary>
/// Guest RAM read through QEMU's own gdbstub in physical-memory mode (<c>Qqemu.PhyMemMode:1</c>, QEMU 7.2
/// gdbstub.c), with GDB remote protocol <c>m</c> packets of up to 2 KiB. Used when QEMU was started with a gdbstub
/// and vmstate has no ptrace rights; about 40 µs a request, far faster than pmemsave.
/// </summary>
public sealed class GdbstubMemory : IPhysicalMemory, IDisposable
{
    private const int MaxRequest = 0x800;
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;
    private readonly MemoryRange[] _ranges;
    private readonly object _lock = new();

    /// <summary>Connects to the gdbstub at <paramref name="host"/>:<paramref name="port"/> and switches it to physical addresses.</summary>
    public GdbstubMemory(string host, int port, IReadOnlyList<MemoryRange> ranges)
    {
        _tcp = new TcpClient(host, port) { NoDelay = true };
        _stream = _tcp.GetStream();
        _ranges = [.. ranges];
        Endpoint = $"{host}:{port}";
        if (Send("Qqemu.PhyMemMode:1") != "OK")
        {
            Dispose();
            throw new IOException($"the gdbstub at {Endpoint} did not switch to physical memory mode");
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
            while (done < destination.Length)
            {
                ulong a = address + (ulong)done;
                int ri = _ranges.FindRange(a);
                if (ri < 0)
                {
                    break;
                }

                int n = (int)Math.Min(Math.Min((ulong)(destination.Length - done), _ranges[ri].End - a), MaxRequest);
                string reply = Send($"m{a:x},{n:x}");
                if (reply.Length == 0 || reply[0] == 'E' || reply.Length != n * 2)
                {
                    throw new IOException($"the gdbstub at {Endpoint} could not read 0x{a:x} (+{n}): \"{reply}\"");
                }

                Convert.FromHexString(reply).CopyTo(destination.Slice(done, n));
                done += n;
            }
        }

        return done;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _stream.Dispose();
        _tcp.Dispose();
    }

    private string Send(string payload)
    {
        byte sum = 0;
        foreach (char c in payload)
        {
            sum += (byte)c;
        }

        _stream.Write(Encoding.ASCII.GetBytes($"${payload}#{sum:x2}"));
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
                _stream.WriteByte((byte)'+');
                return sb.ToString();
            }
        }
    }
}
