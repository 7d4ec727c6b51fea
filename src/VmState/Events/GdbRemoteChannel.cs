using System.Net.Sockets;
using System.Text;
using VmState.Live;

namespace VmState.Events;

/// <summary>
/// One GDB remote protocol connection to QEMU's gdbstub, for the event session. Packets are <c>$payload#cs</c>;
/// QEMU acknowledges each with <c>+</c> (skipped here) and, in system mode, does not wait for our acknowledgement of
/// its replies (QEMU 7.2 gdbstub.c <c>put_packet_binary</c>), so none is sent: a byte that reaches QEMU while the VM
/// runs stops it (<c>gdb_read_byte</c>), which is also how <see cref="Interrupt"/> works.
/// </summary>
internal sealed class GdbRemoteChannel : IDisposable
{
    private readonly Socket _socket;
    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;

    private GdbRemoteChannel(Socket socket, string endpoint)
    {
        _socket = socket;
        Endpoint = endpoint;
    }

    /// <summary>host:port, or <c>unix:PATH</c>.</summary>
    public string Endpoint { get; }

    /// <summary>Connects to an endpoint as <see cref="GdbStubChardev.Endpoint"/> writes it: host:port or <c>unix:PATH</c>.</summary>
    /// <exception cref="IOException">The connection was refused or timed out.</exception>
    /// <exception cref="FormatException">The endpoint is neither.</exception>
    public static GdbRemoteChannel Connect(string endpoint, TimeSpan timeout)
    {
        if (endpoint.StartsWith("unix:", StringComparison.Ordinal))
        {
            return ConnectUnix(endpoint[5..], timeout);
        }

        int colon = endpoint.LastIndexOf(':');
        return colon > 0 && int.TryParse(endpoint.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int port)
            ? Connect(endpoint[..colon].Trim('[', ']'), port, timeout)
            : throw new FormatException($"gdbstub endpoint \"{endpoint}\": neither host:port nor unix:PATH");
    }

    /// <summary>Connects to a stub listening on the UNIX socket <paramref name="path"/>.</summary>
    /// <exception cref="IOException">The connection was refused or timed out.</exception>
    public static GdbRemoteChannel ConnectUnix(string path, TimeSpan timeout)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            using var cts = new CancellationTokenSource(timeout);
            socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cts.Token).AsTask().GetAwaiter().GetResult();
            return new GdbRemoteChannel(socket, "unix:" + path);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            throw new IOException($"cannot connect to the gdbstub at unix:{path}: {e.Message}", e);
        }
    }

    /// <summary>Connects to host:port.</summary>
    /// <exception cref="IOException">The connection was refused or timed out.</exception>
    public static GdbRemoteChannel Connect(string host, int port, TimeSpan timeout)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var cts = new CancellationTokenSource(timeout);
            socket.ConnectAsync(host, port, cts.Token).AsTask().GetAwaiter().GetResult();
            return new GdbRemoteChannel(socket, $"{host}:{port}");
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            throw new IOException($"cannot connect to the gdbstub at {host}:{port}: {e.Message}", e);
        }
    }

    /// <summary>Sends one packet.</summary>
    public void Send(string payload)
    {
        byte sum = 0;
        foreach (char c in payload)
        {
            sum += (byte)c;
        }

        Guard(() => _socket.Send(Encoding.ASCII.GetBytes($"${payload}#{sum:x2}")));
    }

    /// <summary>Sends the interrupt byte (0x03): QEMU stops a running VM and sends a stop reply.</summary>
    public void Interrupt() => Guard(() => _socket.Send([0x03]));

    /// <summary>Sends <paramref name="payload"/> and returns the next reply that is not a stop notification.</summary>
    public string Request(string payload, TimeSpan timeout)
    {
        Send(payload);
        while (true)
        {
            string? reply = Receive(timeout, CancellationToken.None)
                ?? throw new IOException($"the gdbstub at {Endpoint} did not answer \"{payload}\" within {timeout.TotalSeconds:0} s");
            if (!GdbStopReply.TryParse(reply, out _))
            {
                return reply;
            }
        }
    }

    /// <summary>
    /// Detaches (gdb <c>D</c>): QEMU removes every breakpoint and watchpoint of the gdb client and resumes the VM.
    /// Once any client has asked for the multiprocess extensions (gdb does), QEMU 7.2's stub stays in multiprocess
    /// mode for the rest of QEMU's life (<c>handle_query_supported</c> never clears it) and answers a bare
    /// <c>D</c> with <c>E22</c> without resuming; then <c>D;1</c> (QEMU's one process, pid 1) is sent. Returns the last reply.
    /// </summary>
    public string Detach(TimeSpan timeout)
    {
        string reply = Request("D", timeout);
        return reply == "OK" ? reply : Request("D;1", timeout);
    }

    /// <summary>
    /// The next packet's payload, or null when <paramref name="timeout"/> passed or <paramref name="cancellationToken"/>
    /// was cancelled first (checked at least every 50 ms).
    /// </summary>
    /// <exception cref="IOException">The stub closed the connection.</exception>
    public string? Receive(TimeSpan timeout, CancellationToken cancellationToken)
    {
        DateTime deadline = timeout == Timeout.InfiniteTimeSpan ? DateTime.MaxValue : DateTime.UtcNow + timeout;
        while (true)
        {
            int status = GdbPacketFraming.TryTake(_buffer.AsSpan(_start, _end - _start), out string? payload, out int consumed);
            _start += consumed;
            if (status > 0)
            {
                return payload;
            }

            if (_start == _end)
            {
                _start = _end = 0;
            }
            else if (_end == _buffer.Length)
            {
                if (_start == 0)
                {
                    throw new IOException($"the gdbstub at {Endpoint} sent a packet longer than {_buffer.Length} bytes");
                }

                Array.Copy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }

            int n;
            try
            {
                // In slices of at most 50 ms (to see a cancellation), and no longer than the time left.
                while (!_socket.Poll(PollMicroseconds(deadline), SelectMode.SelectRead))
                {
                    if (cancellationToken.IsCancellationRequested || DateTime.UtcNow >= deadline)
                    {
                        return null;
                    }
                }

                n = _socket.Receive(_buffer, _end, _buffer.Length - _end, SocketFlags.None);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                throw new IOException($"the gdbstub connection {Endpoint} failed: {e.Message}", e);
            }

            if (n == 0)
            {
                throw new IOException($"the gdbstub at {Endpoint} closed the connection");
            }

            _end += n;
        }
    }

    private static int PollMicroseconds(DateTime deadline)
    {
        double left = (deadline - DateTime.UtcNow).TotalMicroseconds;
        return left >= 50_000 ? 50_000 : Math.Max(0, (int)left);
    }

    /// <inheritdoc />
    public void Dispose() => _socket.Dispose();

    private void Guard(Action send)
    {
        try
        {
            send();
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            throw new IOException($"the gdbstub connection {Endpoint} failed: {e.Message}", e);
        }
    }
}
