using System.Net;
using System.Net.Sockets;
using System.Text;

namespace VmState.Tests.Gdb;

/// <summary>The client side of the GDB remote protocol, as gdb speaks it, over a loopback TCP connection.</summary>
internal sealed class GdbTestClient : IDisposable
{
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;

    public GdbTestClient(int port, int receiveBufferSize = 0)
    {
        _tcp = new TcpClient();
        if (receiveBufferSize > 0)
        {
            _tcp.ReceiveBufferSize = receiveBufferSize;
        }

        _tcp.Connect(IPAddress.Loopback, port);
        _stream = _tcp.GetStream();
        // A server that never answers fails the test instead of hanging it.
        _stream.ReadTimeout = 15000;
    }

    /// <summary>Console output (O packets) that came with the last reply.</summary>
    public string Output { get; private set; } = string.Empty;

    public TcpClient Tcp => _tcp;

    public static byte[] Frame(string payload)
    {
        byte sum = 0;
        foreach (char c in payload)
        {
            sum += (byte)c;
        }

        return Encoding.Latin1.GetBytes($"${payload}#{sum:x2}");
    }

    public string Send(string payload)
    {
        SendRaw(Frame(payload));
        return ReadReply();
    }

    public string Monitor(string command) => Send("qRcmd," + Convert.ToHexStringLower(Encoding.UTF8.GetBytes(command)));

    public void SendRaw(byte[] bytes) => _stream.Write(bytes);

    /// <summary>The next reply packet's payload, skipping acks and collecting O packets into <see cref="Output"/>.</summary>
    public string ReadReply()
    {
        var output = new StringBuilder();
        while (true)
        {
            string r = ReadPacket();
            if (r.StartsWith('O') && r != "OK")
            {
                output.Append(Encoding.UTF8.GetString(Convert.FromHexString(r[1..])));
                continue;
            }

            Output = output.ToString();
            return r;
        }
    }

    /// <summary>The next byte that is not part of a packet ('+' or '-'), or -1 at end of stream.</summary>
    public int ReadAck() => _stream.ReadByte();

    /// <summary>True when the server closed the connection (reads end), within the read timeout.</summary>
    public bool IsClosedByServer()
    {
        try
        {
            byte[] buffer = new byte[4096];
            while (true)
            {
                int n = _stream.Read(buffer);
                if (n == 0)
                {
                    return true;
                }
            }
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionReset })
        {
            return true;
        }
    }

    private string ReadPacket()
    {
        var reply = new StringBuilder();
        int state = 0;
        while (true)
        {
            int b = _stream.ReadByte();
            if (b == -1)
            {
                throw new EndOfStreamException("the server closed the connection");
            }

            char ch = (char)b;
            if (state == 0)
            {
                if (ch == '$')
                {
                    state = 1;
                }
            }
            else if (state == 1)
            {
                if (ch == '#')
                {
                    state = 2;
                }
                else
                {
                    reply.Append(ch);
                }
            }
            else if (++state == 4)
            {
                return reply.ToString();
            }
        }
    }

    public void Dispose()
    {
        _stream.Dispose();
        _tcp.Dispose();
    }
}
