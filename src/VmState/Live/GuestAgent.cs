using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace VmState.Live;

/// <summary>
/// The QEMU guest agent (qemu-ga) of a running VM: through libvirt for a libvirt domain (libvirt holds the agent's
/// channel), else through the unix socket of the VM's virtio-serial port <c>org.qemu.guest_agent.0</c>, found through
/// QMP. Used by <c>vmstate agent --freeze</c> to freeze the guest's filesystems around a snapshot.
/// </summary>
public sealed class GuestAgent : IAsyncDisposable
{
    /// <summary>The virtio-serial port name qemu-ga serves by default.</summary>
    public const string PortName = "org.qemu.guest_agent.0";

    private const int MaxReplyBytes = 1 << 20;
    private readonly QmpClient _qmp;
    private readonly Socket? _socket;
    private readonly NetworkStream? _stream;
    private readonly byte[] _buffer = new byte[4096];
    private int _start;
    private int _end;

    private GuestAgent(QmpClient qmp, Socket? socket, string description)
    {
        _qmp = qmp;
        _socket = socket;
        _stream = socket is null ? null : new NetworkStream(socket, ownsSocket: false);
        Description = description;
    }

    /// <summary>How the agent is reached.</summary>
    public string Description { get; }

    /// <summary>Connects to the VM's guest agent and checks it answers (guest-sync-delimited).</summary>
    /// <exception cref="IOException">The VM has no agent port, its socket cannot be used, or the agent does not answer.</exception>
    public static async Task<GuestAgent> ConnectAsync(QmpClient qmp, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        GuestAgent agent;
        if (qmp.LibvirtUri is not null)
        {
            agent = new GuestAgent(qmp, null, $"the guest agent through libvirt ({qmp.LibvirtUri})");
            await agent.ExecuteAsync("guest-ping", null, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            return agent;
        }

        List<(string Path, string Type)> devices = await VirtioSerialPorts.DevicesAsync(qmp, cancellationToken).ConfigureAwait(false);
        if (await VirtioSerialPorts.FindAsync(qmp, devices, PortName, cancellationToken).ConfigureAwait(false) is not (string path, string chardev))
        {
            throw new IOException($"the VM has no virtio-serial port {PortName} for a guest agent (start it with one and run qemu-ga in the guest)");
        }

        string socketPath = await VirtioSerialPorts.ServerSocketAsync(qmp, PortName, path, chardev, cancellationToken).ConfigureAwait(false);
        Socket socket = await VirtioSerialPorts.ConnectAsync(socketPath, "the guest agent", cancellationToken).ConfigureAwait(false);
        agent = new GuestAgent(qmp, socket, $"the guest agent on {socketPath}");
        try
        {
            await agent.SyncAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await agent.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return agent;
    }

    /// <summary>Runs one agent command and returns its "return" value.</summary>
    /// <exception cref="QmpException">The agent answered with an error.</exception>
    /// <exception cref="IOException">No answer within <paramref name="timeout"/>, or the channel closed.</exception>
    public async Task<JsonElement> ExecuteAsync(string command, JsonObject? arguments, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(command);
        if (_stream is null)
        {
            return await _qmp.LibvirtAgentCommandAsync(command, arguments, timeout, cancellationToken).ConfigureAwait(false) ?? default;
        }

        var message = new JsonObject { ["execute"] = command };
        if (arguments is not null)
        {
            message["arguments"] = arguments.DeepClone();
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            await _stream.WriteAsync(Encoding.UTF8.GetBytes(message.ToJsonString() + "\n"), cts.Token).ConfigureAwait(false);
            using JsonDocument reply = JsonDocument.Parse(await ReadLineAsync(cts.Token).ConfigureAwait(false));
            if (reply.RootElement.TryGetProperty("error", out JsonElement error))
            {
                throw new QmpException(command,
                    error.TryGetProperty("class", out JsonElement c) ? c.GetString() ?? "?" : "?",
                    error.TryGetProperty("desc", out JsonElement d) ? d.GetString() ?? "?" : "?");
            }

            return reply.RootElement.TryGetProperty("return", out JsonElement r) ? r.Clone() : default;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new IOException($"the guest agent did not answer {command} within {timeout.TotalSeconds:F0} s");
        }
        catch (JsonException e)
        {
            throw new IOException($"the guest agent's answer to {command} is not JSON: {e.Message}", e);
        }
    }

    /// <summary>Freezes the guest's filesystems (guest-fsfreeze-freeze); returns how many it froze.</summary>
    public async Task<int> FreezeAsync(CancellationToken cancellationToken = default) =>
        (await ExecuteAsync("guest-fsfreeze-freeze", null, TimeSpan.FromSeconds(60), cancellationToken).ConfigureAwait(false)).GetInt32();

    /// <summary>Thaws them again (guest-fsfreeze-thaw); returns how many it thawed.</summary>
    public async Task<int> ThawAsync(CancellationToken cancellationToken = default) =>
        (await ExecuteAsync("guest-fsfreeze-thaw", null, TimeSpan.FromSeconds(60), cancellationToken).ConfigureAwait(false)).GetInt32();

    /// <summary>"frozen" or "thawed" (guest-fsfreeze-status).</summary>
    public async Task<string> FreezeStatusAsync(CancellationToken cancellationToken = default) =>
        (await ExecuteAsync("guest-fsfreeze-status", null, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false)).GetString() ?? "?";

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_stream is not null)
        {
            await _stream.DisposeAsync().ConfigureAwait(false);
        }

        _socket?.Dispose();
    }

    /// <summary>
    /// Resynchronises the channel: what an earlier client left unread is skipped up to the 0xFF the agent sends before
    /// its answer to guest-sync-delimited, then the answer with our id is awaited.
    /// </summary>
    private async Task SyncAsync(CancellationToken ct)
    {
        long id = Random.Shared.NextInt64(1, long.MaxValue);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(TimeSpan.FromSeconds(10));
        try
        {
            await _stream!.WriteAsync(Encoding.UTF8.GetBytes(new JsonObject { ["execute"] = "guest-sync-delimited", ["arguments"] = new JsonObject { ["id"] = id } }.ToJsonString() + "\n"), cts.Token).ConfigureAwait(false);
            while (true)
            {
                string line = await ReadLineAsync(cts.Token).ConfigureAwait(false);
                int ff = line.LastIndexOf('\uffff');
                string json = ff >= 0 ? line[(ff + 1)..] : line;
                try
                {
                    using JsonDocument doc = JsonDocument.Parse(json);
                    if (doc.RootElement.TryGetProperty("return", out JsonElement r) && r.ValueKind == JsonValueKind.Number && r.GetInt64() == id)
                    {
                        return;
                    }
                }
                catch (JsonException)
                {
                    // Left over from an earlier client: skipped.
                }
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new IOException("the guest agent did not answer guest-sync-delimited within 10 s (is qemu-ga running in the guest?)");
        }
    }

    /// <summary>One line of the agent's output (bounded), the 0xFF sync byte kept as U+FFFF.</summary>
    private async Task<string> ReadLineAsync(CancellationToken ct)
    {
        var line = new List<byte>();
        while (true)
        {
            if (_start == _end)
            {
                _start = 0;
                _end = await _stream!.ReadAsync(_buffer, ct).ConfigureAwait(false);
                if (_end == 0)
                {
                    throw new IOException("the guest agent's channel closed");
                }
            }

            byte b = _buffer[_start++];
            if (b == (byte)'\n')
            {
                var text = new StringBuilder(line.Count);
                int from = 0;
                for (int i = 0; i <= line.Count; i++)
                {
                    if (i == line.Count || line[i] == 0xff)
                    {
                        text.Append(Encoding.UTF8.GetString(line.GetRange(from, i - from).ToArray()));
                        if (i < line.Count)
                        {
                            text.Append('\uffff');
                        }

                        from = i + 1;
                    }
                }

                return text.ToString();
            }

            if (line.Count >= MaxReplyBytes)
            {
                throw new IOException($"the guest agent sent a line longer than {MaxReplyBytes} bytes");
            }

            line.Add(b);
        }
    }
}
