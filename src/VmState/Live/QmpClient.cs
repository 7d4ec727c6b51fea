using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace VmState.Live;

/// <summary>
/// A client for the QEMU Machine Protocol over a unix socket (QEMU docs/interop/qmp-spec.rst): reads the greeting,
/// negotiates capabilities, sends commands with an "id" and matches replies by id, queues asynchronous events.
/// One background loop reads the socket, so concurrent commands are safe. When the connection drops (QEMU exited),
/// every pending and later command fails with a <see cref="LiveVmGoneException"/>. The same client also speaks to a
/// libvirt domain's QEMU through libvirt's monitor passthrough (<see cref="ConnectLibvirtAsync"/>).
/// </summary>
public sealed class QmpClient : IAsyncDisposable
{
    private static readonly TimeSpan s_defaultTimeout = TimeSpan.FromSeconds(30);
    private readonly Socket? _socket;
    private readonly NetworkStream? _stream;
    private readonly LibvirtMonitor? _libvirt;
    // The command name rides along with each reply slot so a dropped connection can say which command it cut off.
    private readonly ConcurrentDictionary<long, (TaskCompletionSource<JsonElement> Reply, string Command)> _pending = new();
    private readonly Channel<QmpEvent> _events = Channel.CreateUnbounded<QmpEvent>();
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private Task? _reader;
    private long _nextId;
    private volatile Exception? _closed;

    private QmpClient(Socket socket, string path)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        SocketPath = path;
    }

    private QmpClient(string uri, string domain)
    {
        // Opening is blocking (libvirt's calls are); the caller runs this off its own thread.
        _libvirt = LibvirtMonitor.Open(uri, domain, e => _events.Writer.TryWrite(e), Gone);
        SocketPath = _libvirt.Describe();
    }

    /// <summary>
    /// Connects to the QEMU of a running libvirt domain (by name or UUID) through libvirt's monitor passthrough
    /// (<c>libvirt.so.0</c>, <c>libvirt-qemu.so.0</c>): commands, file descriptors and events work as on a QMP socket.
    /// libvirt marks the domain "tainted: custom-monitor" in its log when its monitor is used this way.
    /// </summary>
    /// <exception cref="VmStateNotFoundException">libvirt has no such domain.</exception>
    /// <exception cref="IOException">libvirt is missing or unreachable, or the domain is not running.</exception>
    public static async Task<QmpClient> ConnectLibvirtAsync(string uri, string domain, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(uri);
        ArgumentException.ThrowIfNullOrEmpty(domain);
        TimeSpan limit = timeout ?? s_defaultTimeout;
        QmpClient client;
        try
        {
            client = await Task.Run(() => new QmpClient(uri, domain), cancellationToken).WaitAsync(limit, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"libvirt at {uri} did not answer within {limit.TotalSeconds:F0} s");
        }

        try
        {
            JsonElement v = await client.ExecuteAsync("query-version", null, timeout, cancellationToken).ConfigureAwait(false);
            if (v.TryGetProperty("qemu", out JsonElement q))
            {
                client.Version = (q.GetProperty("major").GetInt32(), q.GetProperty("minor").GetInt32(), q.GetProperty("micro").GetInt32());
                client.Package = v.TryGetProperty("package", out JsonElement p) ? p.GetString() ?? string.Empty : string.Empty;
            }

            return client;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private void Gone(Exception reason)
    {
        _closed ??= reason;
        _events.Writer.TryComplete();
    }

    /// <summary>The socket path; for a libvirt domain, <c>libvirt:DOMAIN@URI</c>.</summary>
    public string SocketPath { get; }

    /// <summary>The libvirt URI behind this client, or null for a QMP socket.</summary>
    public string? LibvirtUri => _libvirt?.Uri;

    /// <summary>The libvirt domain behind this client, or null for a QMP socket.</summary>
    public LibvirtDomainInfo? LibvirtDomain => _libvirt?.Domain;

    /// <summary>The libvirt domain's live XML (blocking), or null for a QMP socket.</summary>
    public string? LibvirtDomainXml() => _libvirt?.DomainXml();

    /// <summary>QEMU's version from the greeting, e.g. (7, 2, 22).</summary>
    public (int Major, int Minor, int Micro) Version { get; private set; }

    /// <summary>
    /// The QEMU process: the one at the other end of the socket (SO_PEERCRED), or for a libvirt domain on this host
    /// the process started with its UUID; null when it cannot be told (a libvirt domain on another host).
    /// </summary>
    public unsafe int? PeerProcessId
    {
        get
        {
            if (_socket is null)
            {
                return _libvirt?.Domain.ProcessId;
            }

            NativeMethods.UCred cred;
            uint length = (uint)sizeof(NativeMethods.UCred);
            int fd = (int)_socket.Handle;
            return NativeMethods.getsockopt(fd, NativeMethods.SolSocket, NativeMethods.SoPeerCred, &cred, &length) == 0 && cred.Pid > 0 ? cred.Pid : null;
        }
    }

    /// <summary>QEMU's package string from the greeting (e.g. "Debian 1:7.2+dfsg-7+deb12u18").</summary>
    public string Package { get; private set; } = string.Empty;

    /// <summary>Connects, reads the greeting and enters command mode (qmp_capabilities).</summary>
    public static async Task<QmpClient> ConnectAsync(string socketPath, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout ?? s_defaultTimeout);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cts.Token).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                throw new IOException($"cannot connect to the QMP socket {socketPath}: {e.Message} (is QEMU running with -qmp unix:{socketPath},server=on,wait=off?)", e);
            }

            var client = new QmpClient(socket, socketPath);
            JsonElement greeting;
            try
            {
                greeting = await client.ReadMessageAsync(cts.Token).ConfigureAwait(false)
                    ?? throw new IOException($"QMP socket {socketPath} closed before the greeting");
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"no QMP greeting on {socketPath} (another client may be connected: QEMU serves one at a time)");
            }

            if (!greeting.TryGetProperty("QMP", out JsonElement qmp))
            {
                throw new IOException($"{socketPath} did not greet with a QMP banner: {greeting}");
            }

            if (qmp.TryGetProperty("version", out JsonElement v) && v.TryGetProperty("qemu", out JsonElement q))
            {
                client.Version = (q.GetProperty("major").GetInt32(), q.GetProperty("minor").GetInt32(), q.GetProperty("micro").GetInt32());
                client.Package = v.TryGetProperty("package", out JsonElement p) ? p.GetString() ?? string.Empty : string.Empty;
            }

            client._reader = Task.Run(client.ReadLoopAsync);
            await client.ExecuteAsync("qmp_capabilities", null, timeout, cancellationToken).ConfigureAwait(false);
            return client;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs a command and returns its "return" value. <paramref name="arguments"/> is a JSON object (or null).
    /// QEMU errors become <see cref="QmpException"/>; no reply in time gives <see cref="TimeoutException"/>.
    /// </summary>
    public Task<JsonElement> ExecuteAsync(string command, JsonObject? arguments = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        ExecuteAsync(command, arguments, null, timeout, cancellationToken);

    /// <summary>
    /// Runs a command that takes a file descriptor, such as <c>getfd</c> or <c>add-fd</c>: <paramref name="descriptor"/>
    /// goes to QEMU with the command's bytes (SCM_RIGHTS), and QEMU holds its own copy once the command returns.
    /// </summary>
    public Task<JsonElement> ExecuteWithDescriptorAsync(string command, JsonObject? arguments, SafeHandle descriptor, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(descriptor);
        return ExecuteAsync(command, arguments, descriptor, timeout, cancellationToken);
    }

    private async Task<JsonElement> ExecuteAsync(string command, JsonObject? arguments, SafeHandle? descriptor, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        if (_closed is Exception closed)
        {
            throw new LiveVmGoneException(SocketPath, command, $"the QMP connection to {SocketPath} is closed: {closed.Message}", closed);
        }

        if (_libvirt is not null)
        {
            return await ExecuteThroughLibvirtAsync(command, arguments, descriptor, timeout, cancellationToken).ConfigureAwait(false);
        }

        long id = Interlocked.Increment(ref _nextId);
        var tcs = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = (tcs, command);
        if (_closed is Exception closedNow)
        {
            tcs.TrySetException(new LiveVmGoneException(SocketPath, command, $"the QMP connection to {SocketPath} is closed: {closedNow.Message}", closedNow));
        }
        var message = new JsonObject { ["execute"] = command, ["id"] = id };
        if (arguments is not null)
        {
            message["arguments"] = arguments.DeepClone();
        }

        byte[] line = Encoding.UTF8.GetBytes(message.ToJsonString() + "\n");
        try
        {
            await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                int sent = descriptor is null ? 0 : SendWithDescriptor(line, descriptor);
                await _stream!.WriteAsync(line.AsMemory(sent), cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw new LiveVmGoneException(SocketPath, command, $"the QMP connection to {SocketPath} is closed: {e.Message}", e);
            }
            finally
            {
                _writeLock.Release();
            }

            JsonElement reply;
            try
            {
                reply = await tcs.Task.WaitAsync(timeout ?? s_defaultTimeout, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"QEMU did not answer {command} within {(timeout ?? s_defaultTimeout).TotalSeconds:F0} s");
            }

            return Unwrap(command, reply);
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    private async Task<JsonElement> ExecuteThroughLibvirtAsync(string command, JsonObject? arguments, SafeHandle? descriptor, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var message = new JsonObject { ["execute"] = command };
        if (arguments is not null)
        {
            message["arguments"] = arguments.DeepClone();
        }

        string json = message.ToJsonString();
        string text;
        try
        {
            // libvirt's call blocks; each runs on a thread of its own, so many VMs' commands (a fleet cut's stops) go
            // out together instead of queueing for the thread pool.
            text = await Task.Factory.StartNew(() => _libvirt!.Execute(command, json, descriptor), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)
                .WaitAsync(timeout ?? s_defaultTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"QEMU (through libvirt) did not answer {command} within {(timeout ?? s_defaultTimeout).TotalSeconds:F0} s");
        }

        using JsonDocument doc = JsonDocument.Parse(text);
        return Unwrap(command, doc.RootElement.Clone());
    }

    /// <summary>
    /// Runs a guest-agent command through libvirt (which holds the agent's channel of a libvirt domain); null when this
    /// client is not a libvirt one.
    /// </summary>
    internal async Task<JsonElement?> LibvirtAgentCommandAsync(string command, JsonObject? arguments, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (_libvirt is null)
        {
            return null;
        }

        var message = new JsonObject { ["execute"] = command };
        if (arguments is not null)
        {
            message["arguments"] = arguments.DeepClone();
        }

        string json = message.ToJsonString();
        int seconds = (int)Math.Clamp(Math.Ceiling(timeout.TotalSeconds), 1, 3600);
        string text = await Task.Factory.StartNew(() => _libvirt.AgentCommand(command, json, seconds), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)
            .WaitAsync(timeout + TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
        using JsonDocument doc = JsonDocument.Parse(text);
        return Unwrap(command, doc.RootElement.Clone());
    }

    private static JsonElement Unwrap(string command, JsonElement reply)
    {
        if (reply.TryGetProperty("error", out JsonElement error))
        {
            throw new QmpException(command,
                error.TryGetProperty("class", out JsonElement c) ? c.GetString() ?? "?" : "?",
                error.TryGetProperty("desc", out JsonElement d) ? d.GetString() ?? "?" : "?");
        }

        return reply.TryGetProperty("return", out JsonElement r) ? r : default;
    }

    /// <summary>
    /// Sends the start of <paramref name="line"/> with <paramref name="descriptor"/> attached (one sendmsg with an
    /// SCM_RIGHTS control message: QEMU's socket chardev keeps the descriptor for the command being read); returns
    /// how many bytes went, the rest to be written as usual.
    /// </summary>
    private unsafe int SendWithDescriptor(byte[] line, SafeHandle descriptor)
    {
        bool added = false;
        descriptor.DangerousAddRef(ref added);
        try
        {
            // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } + one int: CMSG_LEN 20, CMSG_SPACE 24.
            byte* control = stackalloc byte[24];
            new Span<byte>(control, 24).Clear();
            *(nuint*)control = 20;
            *(int*)(control + 8) = NativeMethods.SolSocket;
            *(int*)(control + 12) = NativeMethods.ScmRights;
            *(int*)(control + 16) = (int)descriptor.DangerousGetHandle();
            fixed (byte* p = line)
            {
                var iov = new NativeMethods.IoVec { Base = p, Length = (nuint)line.Length };
                var message = new NativeMethods.MsgHdr { Iov = &iov, IovLength = 1, Control = control, ControlLength = 24 };
                while (true)
                {
                    nint n = NativeMethods.sendmsg((int)_socket!.Handle, &message, NativeMethods.MsgNosignal);
                    if (n >= 0)
                    {
                        return (int)n;
                    }

                    int errno = Marshal.GetLastPInvokeError();
                    if (errno is not (NativeMethods.EAgain or NativeMethods.EIntr))
                    {
                        throw new IOException($"sending a file descriptor over {SocketPath} failed: {Marshal.GetPInvokeErrorMessage(errno)}");
                    }

                    // The socket is non-blocking (its reads are asynchronous) and its buffer is full: QEMU reads soon.
                    Thread.Sleep(1);
                }
            }
        }
        finally
        {
            if (added)
            {
                descriptor.DangerousRelease();
            }
        }
    }

    /// <summary>Runs an HMP command through human-monitor-command and returns its text output.</summary>
    public async Task<string> HumanMonitorCommandAsync(string commandLine, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        JsonElement r = await ExecuteAsync("human-monitor-command", new JsonObject { ["command-line"] = commandLine }, timeout, cancellationToken).ConfigureAwait(false);
        return r.ValueKind == JsonValueKind.String ? r.GetString() ?? string.Empty : string.Empty;
    }

    /// <summary>Waits for the next event, whatever its name.</summary>
    /// <exception cref="LiveVmGoneException">The connection closed first.</exception>
    public async Task<QmpEvent> NextEventAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _events.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException e)
        {
            throw new LiveVmGoneException(SocketPath, null, $"the QMP connection to {SocketPath} closed while waiting for an event", e);
        }
    }

    /// <summary>Waits for the next event named <paramref name="name"/> (events of other names are dropped).</summary>
    public async Task<QmpEvent> WaitForEventAsync(string name, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            while (true)
            {
                QmpEvent e = await _events.Reader.ReadAsync(cts.Token).ConfigureAwait(false);
                if (e.Name == name)
                {
                    return e;
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"no {name} event within {timeout.TotalSeconds:F0} s");
        }
        catch (ChannelClosedException e)
        {
            throw new LiveVmGoneException(SocketPath, null, $"the QMP connection to {SocketPath} closed while waiting for {name}", e);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_libvirt is not null)
        {
            await Task.Run(_libvirt.Dispose).ConfigureAwait(false);
            _events.Writer.TryComplete();
            _stop.Dispose();
            _writeLock.Dispose();
            return;
        }

        try
        {
            _socket!.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }

        if (_reader is not null)
        {
            try
            {
                await _reader.ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or SocketException)
            {
            }
        }

        await _stream!.DisposeAsync().ConfigureAwait(false);
        _socket!.Dispose();
        _stop.Dispose();
        _writeLock.Dispose();
    }

    private readonly byte[] _readBuffer = new byte[64 * 1024];
    private readonly MemoryStream _line = new();
    private int _readStart;
    private int _readEnd;

    private async Task<JsonElement?> ReadMessageAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            int nl = Array.IndexOf(_readBuffer, (byte)'\n', _readStart, _readEnd - _readStart);
            if (nl >= 0)
            {
                _line.Write(_readBuffer, _readStart, nl - _readStart);
                _readStart = nl + 1;
                byte[] text = _line.ToArray();
                _line.SetLength(0);
                if (text.AsSpan().Trim((byte)'\r').IsEmpty)
                {
                    continue;
                }

                using JsonDocument doc = JsonDocument.Parse(text);
                return doc.RootElement.Clone();
            }

            _line.Write(_readBuffer, _readStart, _readEnd - _readStart);
            if (_line.Length > 64 << 20)
            {
                throw new IOException($"a QMP message on {SocketPath} exceeds 64 MiB");
            }

            _readStart = 0;
            _readEnd = await _stream!.ReadAsync(_readBuffer, cancellationToken).ConfigureAwait(false);
            if (_readEnd == 0)
            {
                return null;
            }
        }
    }

    private async Task ReadLoopAsync()
    {
        Exception reason = new IOException("QEMU closed the connection");
        try
        {
            while (true)
            {
                JsonElement? message = await ReadMessageAsync(_stop.Token).ConfigureAwait(false);
                if (message is not JsonElement m)
                {
                    break;
                }

                if (m.TryGetProperty("event", out JsonElement ev))
                {
                    DateTimeOffset ts = DateTimeOffset.UnixEpoch;
                    if (m.TryGetProperty("timestamp", out JsonElement t) && t.TryGetProperty("seconds", out JsonElement s) && t.TryGetProperty("microseconds", out JsonElement us))
                    {
                        ts = DateTimeOffset.FromUnixTimeSeconds(s.GetInt64()).AddTicks(us.GetInt64() * 10);
                    }

                    _events.Writer.TryWrite(new QmpEvent(ev.GetString() ?? string.Empty, m.TryGetProperty("data", out JsonElement d) ? d : default, ts));
                }
                else if (m.TryGetProperty("id", out JsonElement idElement) && idElement.TryGetInt64(out long id) && _pending.TryGetValue(id, out (TaskCompletionSource<JsonElement> Reply, string Command) pending))
                {
                    pending.Reply.TrySetResult(m);
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or JsonException or OperationCanceledException or ObjectDisposedException)
        {
            reason = e;
        }

        _closed = reason;
        _events.Writer.TryComplete();
        foreach ((TaskCompletionSource<JsonElement> reply, string command) in _pending.Values)
        {
            reply.TrySetException(new LiveVmGoneException(SocketPath, command, $"the QMP connection to {SocketPath} closed: {reason.Message}", reason));
        }
    }
}
