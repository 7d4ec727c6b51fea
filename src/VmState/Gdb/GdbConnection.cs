using System.Text;

namespace VmState.Gdb;

/// <summary>
/// One client's session on the wire: packets read with <see cref="GdbPacketReader"/> under the idle and
/// authentication timeouts, acknowledged until <c>QStartNoAckMode</c>, answered through
/// <see cref="GdbAuthentication"/> (before the token) or the <see cref="GdbCommandDispatcher"/>, and replies framed
/// and written under the write timeout. A client's misbehaviour ends only this session.
/// </summary>
internal sealed class GdbConnection
{
    private readonly Stream _stream;
    private readonly GdbServerOptions _options;
    private readonly TextWriter _log;
    private readonly GdbCommandDispatcher _dispatcher;
    private readonly GdbAuthentication _auth;
    private bool _noAck;

    public GdbConnection(Stream stream, GdbServerOptions options, TextWriter log, GdbCommandDispatcher dispatcher)
    {
        _stream = stream;
        _options = options;
        _log = log;
        _dispatcher = dispatcher;
        _auth = new GdbAuthentication(options, log, dispatcher);
    }

    /// <summary>Serves the client until it detaches, kills, disconnects or fails to authenticate.</summary>
    /// <exception cref="TimeoutException">The client was silent, did not authenticate in time, or did not take a reply.</exception>
    /// <exception cref="IOException">The connection failed.</exception>
    public async Task RunAsync(CancellationToken ct)
    {
        var reader = new GdbPacketReader(_stream, GdbRemoteServer.MaxPacketSize);
        DateTime authDeadline = DateTime.UtcNow + _options.AuthTimeout;
        while (true)
        {
            GdbPacket? read;
            using (var idle = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                // Until it authenticates, a client may hold the one client slot only for AuthTimeout.
                TimeSpan left = _auth.Authenticated ? _options.IdleTimeout : authDeadline - DateTime.UtcNow;
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
                    throw new TimeoutException(_auth.Authenticated || DateTime.UtcNow < authDeadline ? $"no packet for {_options.IdleTimeout}" : $"not authenticated within {_options.AuthTimeout}");
                }
            }

            if (read is not GdbPacket packet)
            {
                return;
            }

            switch (packet.Kind)
            {
                case GdbPacketKind.Interrupt:
                    await SendAsync(_dispatcher.StopReply(), ct).ConfigureAwait(false);
                    continue;
                case GdbPacketKind.BadChecksum:
                    _log.WriteLine("gdbserver: packet with a bad checksum");
                    if (!_noAck)
                    {
                        await SendRawAsync("-"u8.ToArray(), ct).ConfigureAwait(false);
                    }

                    continue;
                case GdbPacketKind.TooLong:
                case GdbPacketKind.Malformed:
                    _log.WriteLine(packet.Kind == GdbPacketKind.TooLong ? $"gdbserver: packet longer than {GdbRemoteServer.MaxPacketSize} bytes discarded" : "gdbserver: packet ends inside an escape");
                    await AckAsync(ct).ConfigureAwait(false);
                    await SendAsync(packet.Kind == GdbPacketKind.TooLong ? GdbReplies.TooLong : GdbReplies.Malformed, ct).ConfigureAwait(false);
                    continue;
            }

            string p = packet.Payload;
            await AckAsync(ct).ConfigureAwait(false);
            GdbAnswer answer;
            try
            {
                answer = _auth.Authenticated ? _dispatcher.Handle(p, ct) : _auth.Handle(p);
            }
            catch (Exception e) when (e is VmStateException or ArgumentException or FormatException or InvalidOperationException or IOException or OverflowException or UnauthorizedAccessException)
            {
                _log.WriteLine($"gdbserver: {GdbText.Printable(p.Split(':')[0])}: {e.Message}");
                answer = new GdbAnswer(GdbReplies.Malformed);
            }

            if (answer.Output is not null)
            {
                await SendAsync("O" + Convert.ToHexStringLower(Encoding.UTF8.GetBytes(answer.Output + "\n")), ct).ConfigureAwait(false);
            }

            await SendAsync(answer.Reply, ct).ConfigureAwait(false);
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

    private Task AckAsync(CancellationToken ct) => _noAck ? Task.CompletedTask : SendRawAsync("+"u8.ToArray(), ct);

    private Task SendAsync(string payload, CancellationToken ct) => SendRawAsync(GdbText.Frame(payload), ct);

    private async Task SendRawAsync(byte[] bytes, CancellationToken ct)
    {
        // A client that stops reading fills the socket buffers, and the write would wait forever.
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.WriteTimeout);
        try
        {
            await _stream.WriteAsync(bytes, timeout.Token).ConfigureAwait(false);
            await _stream.FlushAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"the client did not take a reply within {_options.WriteTimeout}");
        }
    }
}
