using System.Net.Sockets;
using VmState.Machine;

namespace VmState.Gdb;

/// <summary>
/// A GDB remote serial protocol server over a snapshot (GDB manual, "Remote Protocol"): registers with a target
/// description that includes segment and control registers, memory by kernel-virtual address (through the
/// selected vCPU's page tables) or, after <c>monitor phys on</c>, by guest-physical address; vCPUs as threads;
/// writes kept in an overlay; <c>monitor save NAME</c> writes a new snapshot carrying them into the save directory.
/// Hostile traffic ends at most the client that sent it: every packet is bounded and parsed without trusting it,
/// and slow or silent clients are timed out (see <see cref="GdbServerOptions"/>).
/// </summary>
/// <remarks>
/// This type is the transport: listening, one client at a time with a bounded wait queue, and the lifetime of a
/// connection. A connection's packets, timeouts and acknowledgements are <see cref="GdbConnection"/>'s, the token
/// check <see cref="GdbAuthentication"/>'s, what each packet does <see cref="GdbCommandDispatcher"/>'s, and the
/// registers, memory, edits and saving it works on <see cref="GdbTarget"/>'s.
/// </remarks>
public sealed class GdbRemoteServer
{
    /// <summary>The largest packet accepted (announced to gdb as PacketSize); longer ones are answered with an error.</summary>
    public const int MaxPacketSize = 0x8000;

    private readonly GdbTarget _target;
    private readonly GdbCommandDispatcher _dispatcher;
    private readonly TextWriter _log;
    private readonly GdbServerOptions _options;
    private int _busy;

    /// <summary>Serves <paramref name="machine"/> with default options (loopback use: no token, saving disabled).</summary>
    public GdbRemoteServer(MachineState machine, TextWriter log)
        : this(machine, log, new GdbServerOptions())
    {
    }

    /// <summary>Serves <paramref name="machine"/>; writes are possible when it was read from a stream or qcow2 snapshot.</summary>
    public GdbRemoteServer(MachineState machine, TextWriter log, GdbServerOptions options)
    {
        _target = new GdbTarget(machine, log, options.SaveDirectory);
        _dispatcher = new GdbCommandDispatcher(_target, log);
        _log = log;
        _options = options;
    }

    /// <summary>Memory addresses are guest-physical (true) or virtual through the selected vCPU's page tables.</summary>
    public bool PhysicalMode
    {
        get => _target.PhysicalMode;
        set => _target.PhysicalMode = value;
    }

    /// <summary>Set when the client asked to kill the target (the server may exit).</summary>
    public bool KillRequested => _dispatcher.KillRequested;

    /// <summary>Edits made so far (memory and registers).</summary>
    public IReadOnlyList<string> Edits => _target.Edits;

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
            await new GdbConnection(stream, _options, _log, _dispatcher).RunAsync(cancellationToken).ConfigureAwait(false);
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

    private static async Task WritePacketAsync(Stream stream, string payload, CancellationToken ct)
    {
        await stream.WriteAsync(GdbText.Frame(payload), ct).ConfigureAwait(false);
        await stream.FlushAsync(ct).ConfigureAwait(false);
    }
}
