using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace VmState.Live;

/// <summary>The VM's user-created devices and its virtio-serial ports by name, read through QMP (qom-list, qom-get, query-chardev).</summary>
internal static class VirtioSerialPorts
{
    /// <summary>Every device under /machine/peripheral and /machine/peripheral-anon: its QOM path and type.</summary>
    public static async Task<List<(string Path, string Type)>> DevicesAsync(QmpClient qmp, CancellationToken ct)
    {
        var devices = new List<(string Path, string Type)>();
        foreach (string container in (string[])["/machine/peripheral", "/machine/peripheral-anon"])
        {
            JsonElement list = await qmp.ExecuteAsync("qom-list", new JsonObject { ["path"] = container }, null, ct).ConfigureAwait(false);
            foreach (JsonElement e in list.EnumerateArray())
            {
                string? type = e.GetProperty("type").GetString();
                if (type is not null && type.StartsWith("child<", StringComparison.Ordinal) && type.EndsWith('>'))
                {
                    devices.Add(($"{container}/{e.GetProperty("name").GetString()}", type[6..^1]));
                }
            }
        }

        return devices;
    }

    /// <summary>The port named <paramref name="portName"/> among <paramref name="devices"/>: its QOM path and chardev id, or null.</summary>
    public static async Task<(string DevicePath, string Chardev)?> FindAsync(QmpClient qmp, IEnumerable<(string Path, string Type)> devices, string portName, CancellationToken ct)
    {
        foreach ((string path, string _) in devices.Where(d => d.Type == "virtserialport"))
        {
            JsonElement name = await qmp.ExecuteAsync("qom-get", new JsonObject { ["path"] = path, ["property"] = "name" }, null, ct).ConfigureAwait(false);
            if (name.ValueKind == JsonValueKind.String && name.GetString() == portName)
            {
                string chardev = (await qmp.ExecuteAsync("qom-get", new JsonObject { ["path"] = path, ["property"] = "chardev" }, null, ct).ConfigureAwait(false)).GetString() ?? string.Empty;
                return (path, chardev);
            }
        }

        return null;
    }

    /// <summary>Connects to the unix server socket of a port's chardev; <paramref name="what"/> names it in the error.</summary>
    /// <exception cref="IOException">The connection was refused or the socket is missing.</exception>
    public static async Task<Socket> ConnectAsync(string path, string what, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct).ConfigureAwait(false);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new IOException($"cannot connect to {what}'s socket {path}: {e.Message}", e);
        }
    }

    /// <summary>The unix socket path a port's chardev listens on with nobody connected.</summary>
    /// <exception cref="IOException">The chardev is unknown, not a unix server socket, or already has a client.</exception>
    public static async Task<string> ServerSocketAsync(QmpClient qmp, string portName, string devicePath, string chardev, CancellationToken ct)
    {
        JsonElement chardevs = await qmp.ExecuteAsync("query-chardev", null, null, ct).ConfigureAwait(false);
        string? filename = chardevs.EnumerateArray().Where(c => c.GetProperty("label").GetString() == chardev).Select(c => c.GetProperty("filename").GetString()).FirstOrDefault();
        if (filename is null)
        {
            throw new IOException($"the port {devicePath} names chardev '{chardev}', which query-chardev does not list");
        }

        return TriggerChannel.UnixServerPath(filename, out string? error)
            ?? throw new IOException($"the VM's port {portName} ({devicePath}) cannot be used: {error}");
    }
}
