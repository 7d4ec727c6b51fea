using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Win32.SafeHandles;

namespace VmState.Live;

/// <summary>
/// The host side of the guest's trigger port, the virtio-serial port <see cref="TriggerRequest.PortName"/>. Either the
/// VM was started with one (<c>-device virtserialport,name=org.vmstate.trigger.0,chardev=ID</c> on a
/// <c>-chardev socket,id=ID,path=PATH,server=on,wait=off</c>, or libvirt's <c>&lt;channel type='unix'&gt;</c> with that
/// target name), and this connects to its socket; or the VM has none and, unless told not to, it is hot-plugged through
/// QMP: a socket chardev on one end of a socket pair handed to QEMU (<c>getfd</c> + <c>chardev-add</c>), a
/// <c>virtserialport</c> on the VM's virtio-serial bus (<c>device_add</c>) and, when the VM has no virtio-serial
/// controller, a <c>virtio-serial-pci</c> (PCI hotplug: the guest must support it, and q35's root bus does not).
/// Disposing removes what was hot-plugged again.
/// </summary>
public sealed class TriggerChannel : IAsyncDisposable
{
    private const string ChardevId = "vmstate-trigger";
    private const string PortId = "vmstate-trigger-port";
    private const string ControllerId = "vmstate-trigger-serial";

    private readonly QmpClient _qmp;
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly bool _addedPort;
    private readonly bool _addedController;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private DateTimeOffset? _lastAnswer;

    private TriggerChannel(QmpClient qmp, Socket socket, string description, bool addedPort, bool addedController)
    {
        _qmp = qmp;
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        Description = description;
        _addedPort = addedPort;
        _addedController = addedController;
    }

    /// <summary>How the port was reached: the VM's own port and its socket, or what was hot-plugged.</summary>
    public string Description { get; }

    /// <summary>True when the port was hot-plugged by this channel (and is removed again on dispose).</summary>
    public bool HotPlugged => _addedPort;

    /// <summary>The stream of the guest's request lines (read with <see cref="TriggerLineReader"/>).</summary>
    public Stream Requests => _stream;

    /// <summary>
    /// Finds the VM's trigger port and connects to it; hot-plugs one where the VM has none and
    /// <paramref name="allowHotplug"/> is set.
    /// </summary>
    /// <exception cref="IOException">The port exists but its socket cannot be used (a client already holds it, it is not
    /// a unix server socket), or no port exists and hot-plugging was not allowed or QEMU refused it (its reason given).</exception>
    /// <exception cref="QmpException">QEMU refused a query.</exception>
    public static async Task<TriggerChannel> OpenAsync(QmpClient qmp, bool allowHotplug = true, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        List<(string Path, string Type)> devices = await VirtioSerialPorts.DevicesAsync(qmp, cancellationToken).ConfigureAwait(false);
        if (await VirtioSerialPorts.FindAsync(qmp, devices, TriggerRequest.PortName, cancellationToken).ConfigureAwait(false) is (string path, string chardev))
        {
            return await ConnectConfiguredAsync(qmp, path, chardev, cancellationToken).ConfigureAwait(false);
        }

        if (!allowHotplug)
        {
            throw new IOException($"the VM has no virtio-serial port named {TriggerRequest.PortName} (start it with one, see the user guide, or let the agent hot-plug one)");
        }

        return await HotPlugAsync(qmp, devices.Any(d => d.Type.StartsWith("virtio-serial", StringComparison.Ordinal)), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Parses <c>query-chardev</c>'s filename of a unix server socket nobody is connected to: its path, or null.</summary>
    /// <param name="filename">For example <c>disconnected:unix:/run/vm/trigger.sock,server=on</c>.</param>
    /// <param name="error">Why it cannot be used, when the result is null.</param>
    public static string? UnixServerPath(string filename, out string? error)
    {
        ArgumentNullException.ThrowIfNull(filename);
        error = null;
        bool disconnected = filename.StartsWith("disconnected:", StringComparison.Ordinal);
        string rest = disconnected ? filename["disconnected:".Length..] : filename;
        if (!rest.StartsWith("unix:", StringComparison.Ordinal))
        {
            error = $"its chardev is '{filename}', not a unix socket the agent can connect to (use -chardev socket,path=PATH,server=on,wait=off)";
            return null;
        }

        int comma = rest.IndexOf(",server=on", StringComparison.Ordinal);
        if (comma < 0)
        {
            error = $"its chardev '{filename}' is a client socket; the agent needs it to be a server (server=on,wait=off)";
            return null;
        }

        if (!disconnected)
        {
            error = $"its socket {rest[5..comma]} already has a client (another agent?)";
            return null;
        }

        return rest[5..comma];
    }

    /// <summary>Writes one answer line to the guest.</summary>
    public async Task WriteLineAsync(string line, CancellationToken cancellationToken = default)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await _stream.WriteAsync(Encoding.UTF8.GetBytes(line), cancellationToken).ConfigureAwait(false);
            await _stream.FlushAsync(cancellationToken).ConfigureAwait(false);
            _lastAnswer = DateTimeOffset.UtcNow;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Closes the connection and removes what was hot-plugged (the port, its chardev, the controller added for it).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_addedPort && _lastAnswer is DateTimeOffset answered)
        {
            // The last answer is in QEMU's hands, not yet in the guest's: a port removed now can take it with it (the
            // guest's requester then fails). The guest closes the port once it has read its answer; wait for that.
            await WaitForGuestCloseAsync(answered, TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }

        await _stream.DisposeAsync().ConfigureAwait(false);
        _socket.Dispose();
        _writeLock.Dispose();
        if (_addedPort)
        {
            // A virtio-serial port leaves at once (no guest handshake); its chardev can go once it is gone.
            if (await DeleteDeviceAsync(_qmp, PortId, TimeSpan.FromSeconds(5)).ConfigureAwait(false))
            {
                await TryAsync(_qmp, "chardev-remove", new JsonObject { ["id"] = ChardevId }).ConfigureAwait(false);
            }
        }

        if (_addedController)
        {
            // A PCI unplug needs the guest's consent (ACPI); it is asked for, and completes when the guest agrees.
            await DeleteDeviceAsync(_qmp, ControllerId, TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
    }

    private static async Task<TriggerChannel> ConnectConfiguredAsync(QmpClient qmp, string devicePath, string chardev, CancellationToken ct)
    {
        string path = await VirtioSerialPorts.ServerSocketAsync(qmp, TriggerRequest.PortName, devicePath, chardev, ct).ConfigureAwait(false);
        Socket socket = await VirtioSerialPorts.ConnectAsync(path, "the trigger port", ct).ConfigureAwait(false);
        return new TriggerChannel(qmp, socket, $"the VM's port {devicePath} (chardev {chardev}, socket {path})", addedPort: false, addedController: false);
    }

    private static async Task<TriggerChannel> HotPlugAsync(QmpClient qmp, bool hasBus, CancellationToken ct)
    {
        (Socket ours, SafeFileHandle theirs) = SocketPair();
        bool chardevAdded = false;
        bool controllerAdded = false;
        try
        {
            using (theirs)
            {
                await qmp.ExecuteWithDescriptorAsync("getfd", new JsonObject { ["fdname"] = ChardevId }, theirs, null, ct).ConfigureAwait(false);
            }

            // QEMU 7.2's chardev-add takes the legacy socket address form: {"type": "fd", "data": {"str": NAME}}.
            await qmp.ExecuteAsync("chardev-add", new JsonObject
            {
                ["id"] = ChardevId,
                ["backend"] = new JsonObject
                {
                    ["type"] = "socket",
                    ["data"] = new JsonObject
                    {
                        ["addr"] = new JsonObject { ["type"] = "fd", ["data"] = new JsonObject { ["str"] = ChardevId } },
                        ["server"] = false,
                    },
                },
            }, null, ct).ConfigureAwait(false);
            chardevAdded = true;
            if (!hasBus)
            {
                try
                {
                    await qmp.ExecuteAsync("device_add", new JsonObject { ["driver"] = "virtio-serial-pci", ["id"] = ControllerId }, null, ct).ConfigureAwait(false);
                }
                catch (QmpException e)
                {
                    throw new IOException($"the VM has no virtio-serial controller and QEMU refused to hot-plug one ({e.Description}); start it with -device virtio-serial-pci, or give it a bus that can hot-plug (pc with ACPI on, or a free pcie-root-port on q35); see the user guide", e);
                }

                controllerAdded = true;
            }

            await qmp.ExecuteAsync("device_add", new JsonObject
            {
                ["driver"] = "virtserialport",
                ["chardev"] = ChardevId,
                ["name"] = TriggerRequest.PortName,
                ["id"] = PortId,
            }, null, ct).ConfigureAwait(false);
            string description = controllerAdded
                ? $"hot-plugged port {PortId} on a hot-plugged virtio-serial-pci ({ControllerId})"
                : $"hot-plugged port {PortId} on the VM's virtio-serial bus";
            return new TriggerChannel(qmp, ours, description, addedPort: true, addedController: controllerAdded);
        }
        catch
        {
            ours.Dispose();
            if (controllerAdded)
            {
                await DeleteDeviceAsync(qmp, ControllerId, TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            }

            if (chardevAdded)
            {
                await TryAsync(qmp, "chardev-remove", new JsonObject { ["id"] = ChardevId }).ConfigureAwait(false);
            }
            else
            {
                await TryAsync(qmp, "closefd", new JsonObject { ["fdname"] = ChardevId }).ConfigureAwait(false);
            }

            throw;
        }
    }

    /// <summary>
    /// Waits (at most <paramref name="wait"/>) for QEMU's VSERPORT_CHANGE of our port closing after
    /// <paramref name="since"/> (QEMU's event times are the host's clock, as ours); events of other kinds are dropped.
    /// </summary>
    private async Task WaitForGuestCloseAsync(DateTimeOffset since, TimeSpan wait)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            while (clock.Elapsed < wait)
            {
                QmpEvent e = await _qmp.WaitForEventAsync("VSERPORT_CHANGE", wait - clock.Elapsed).ConfigureAwait(false);
                if (e.Data.ValueKind == System.Text.Json.JsonValueKind.Object
                    && e.Data.TryGetProperty("id", out System.Text.Json.JsonElement id) && id.ValueKind == System.Text.Json.JsonValueKind.String && id.GetString() == PortId
                    && e.Data.TryGetProperty("open", out System.Text.Json.JsonElement open) && open.ValueKind == System.Text.Json.JsonValueKind.False
                    && e.Timestamp >= since.AddSeconds(-1))
                {
                    return;
                }
            }
        }
        catch (Exception e) when (e is TimeoutException or LiveVmGoneException)
        {
            // No close seen in time (or QEMU is gone): the port is removed anyway.
        }
    }

    private static async Task<bool> DeleteDeviceAsync(QmpClient qmp, string id, TimeSpan wait)
    {
        if (!await TryAsync(qmp, "device_del", new JsonObject { ["id"] = id }).ConfigureAwait(false))
        {
            return false;
        }

        // Gone when qom-get of its path fails; DEVICE_DELETED is not waited for (other readers may take the events).
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < wait)
        {
            if (!await TryAsync(qmp, "qom-get", new JsonObject { ["path"] = $"/machine/peripheral/{id}", ["property"] = "type" }).ConfigureAwait(false))
            {
                return true;
            }

            await Task.Delay(50).ConfigureAwait(false);
        }

        return false;
    }

    private static async Task<bool> TryAsync(QmpClient qmp, string command, JsonObject arguments)
    {
        try
        {
            await qmp.ExecuteAsync(command, arguments, TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is QmpException or IOException or LiveVmGoneException or TimeoutException)
        {
            return false;
        }
    }

    private static unsafe (Socket Ours, SafeFileHandle Theirs) SocketPair()
    {
        int* fds = stackalloc int[2];
        if (NativeMethods.socketpair(NativeMethods.AfUnix, NativeMethods.SockStream | NativeMethods.SockCloexec, 0, fds) != 0)
        {
            throw new IOException($"socketpair failed: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        return (new Socket(new SafeSocketHandle(fds[0], ownsHandle: true)), new SafeFileHandle(fds[1], ownsHandle: true));
    }
}
