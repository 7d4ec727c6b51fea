using System.Net.Sockets;
using System.Text;
using VmState.Live;

namespace VmState.Tests.Live;

/// <summary>The QMP client against a scripted QEMU on a unix socket: what a caller sees when QEMU goes away.</summary>
public sealed class QmpClientTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-qmp-").FullName;

    /// <inheritdoc />
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string Greeting = """{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "test"}, "capabilities": []}}""";

    /// <summary>
    /// A QEMU that greets, accepts qmp_capabilities, reads one more command and then closes the socket without an
    /// answer, as QEMU does when it exits in the middle of a command.
    /// </summary>
    private static async Task ServeThenCloseMidCommandAsync(Socket listener)
    {
        using Socket peer = await listener.AcceptAsync();
        using var stream = new NetworkStream(peer, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await stream.WriteAsync(Encoding.UTF8.GetBytes(Greeting + "\n"));
        string capabilities = await reader.ReadLineAsync() ?? throw new IOException("the client closed before qmp_capabilities");
        long id = System.Text.Json.JsonDocument.Parse(capabilities).RootElement.GetProperty("id").GetInt64();
        await stream.WriteAsync(Encoding.UTF8.GetBytes($$"""{"return": {}, "id": {{id}}}""" + "\n"));
        _ = await reader.ReadLineAsync();
        peer.Shutdown(SocketShutdown.Both);
    }

    [Fact]
    public async Task AConnectionClosedMidCommandFailsItAndLaterCommandsWithLiveVmGone()
    {
        string path = Path.Combine(_dir, "qmp.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        Task server = ServeThenCloseMidCommandAsync(listener);

        await using QmpClient client = await QmpClient.ConnectAsync(path, TimeSpan.FromSeconds(10));
        Assert.Equal((7, 2, 0), client.Version);

        LiveVmGoneException during = await Assert.ThrowsAsync<LiveVmGoneException>(() => client.ExecuteAsync("query-status", null, TimeSpan.FromSeconds(10)));
        Assert.Equal((path, "query-status"), (during.SocketPath, during.Command));
        await server;

        // The connection stays closed: the next command fails at once, naming itself.
        LiveVmGoneException after = await Assert.ThrowsAsync<LiveVmGoneException>(() => client.ExecuteAsync("cont", null, TimeSpan.FromSeconds(10)));
        Assert.Equal((path, "cont"), (after.SocketPath, after.Command));

        // Events end the same way.
        LiveVmGoneException waiting = await Assert.ThrowsAsync<LiveVmGoneException>(() => client.WaitForEventAsync("STOP", TimeSpan.FromSeconds(10)));
        Assert.Null(waiting.Command);
    }
}
