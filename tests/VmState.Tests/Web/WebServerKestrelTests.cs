using System.Net;
using System.Net.Http.Headers;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using VmState.Cli.Web;

namespace VmState.Tests.Web;

/// <summary>
/// <c>vmstate serve</c>'s server on Kestrel as the CLI starts it, over real sockets: what the in-process
/// <see cref="WebServerTests"/> cannot show. It listens on loopback unless told otherwise, a non-loopback address needs
/// a token and asks for it on the wire, Kestrel's own request limits answer oversized requests with a 4xx, and
/// path-like request targets decoded by Kestrel (not by the test host) still never reach the file system.
/// </summary>
public sealed class WebServerKestrelTests : IAsyncLifetime
{
    private const string Token = "0123456789abcdef-test-token";
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-webk-").FullName;
    private WebServer _server = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        // Default Bind: the loopback default is what is under test.
        _server = await WebServer.StartAsync(Options(token: null));
        _client = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = _server.Url };
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _server.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>One source that does not exist: the server starts and lists it with its error, nothing is read.</summary>
    private WebServerOptions Options(string? token, IPAddress? bind = null)
    {
        var options = new WebServerOptions
        {
            Sources = [new WebSourceSpec(WebSourceKind.Snapshot, Path.Combine(_dir, "missing.mig"))],
            Port = 0,
            Token = token,
            OpenFile = path => Vm.Open(path),
        };
        return bind is null ? options : new WebServerOptions
        {
            Sources = options.Sources,
            Port = 0,
            Token = token,
            OpenFile = options.OpenFile,
            Bind = bind,
        };
    }

    private static int BoundPort(WebServer server)
    {
        IServer s = server.Services.GetRequiredService<IServer>();
        Assert.IsNotType<TestServer>(s);
        string address = Assert.Single(s.Features.Get<IServerAddressesFeature>()!.Addresses);
        return new Uri(address).Port;
    }

    [Fact]
    public async Task ByDefaultItListensOnLoopbackOnly()
    {
        Assert.Equal(IPAddress.Loopback, _server.Options.Bind);
        IServer s = _server.Services.GetRequiredService<IServer>();
        Assert.Equal($"http://127.0.0.1:{BoundPort(_server)}", Assert.Single(s.Features.Get<IServerAddressesFeature>()!.Addresses));
        Assert.Equal("127.0.0.1", _server.Url.Host);
        Assert.NotEqual(0, _server.Url.Port);

        using HttpResponseMessage sources = await _client.GetAsync("/api/sources");
        Assert.Equal(HttpStatusCode.OK, sources.StatusCode);
        Assert.Contains("no such file", await sources.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // The Host header as a browser sends it after DNS rebinding, on the wire.
        using var rebound = new HttpRequestMessage(HttpMethod.Get, "/api/sources");
        rebound.Headers.Host = "attacker.example";
        Assert.Equal(HttpStatusCode.MisdirectedRequest, (await _client.SendAsync(rebound)).StatusCode);

        // Nothing answers on the machine's other addresses.
        IPAddress[] others = NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus == OperationalStatus.Up)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses.Select(u => u.Address))
            .Where(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a))
            .ToArray();
        foreach (IPAddress other in others)
        {
            using var tcp = new TcpClient();
            SocketException e = await Assert.ThrowsAsync<SocketException>(() => tcp.ConnectAsync(other, _server.Url.Port));
            Assert.Equal(SocketError.ConnectionRefused, e.SocketErrorCode);
        }
    }

    [Fact]
    public async Task ANonLoopbackAddressNeedsATokenAndAsksForItOnTheWire()
    {
        ArgumentException e = Assert.Throws<ArgumentException>(Options(null, IPAddress.Any).Check);
        Assert.Contains("needs a token", e.Message, StringComparison.Ordinal);
        Options(Token, IPAddress.Any).Check();
        Options(null, IPAddress.IPv6Loopback).Check();
        Assert.Throws<ArgumentException>(Options("short", IPAddress.Any).Check);

        // StartAsync refuses before listening.
        e = await Assert.ThrowsAsync<ArgumentException>(() => WebServer.StartAsync(Options(null, IPAddress.Any)));
        Assert.Contains("needs a token", e.Message, StringComparison.Ordinal);

        await using WebServer server = await WebServer.StartAsync(Options(Token, IPAddress.Any));
        Assert.Equal(Dns.GetHostName(), server.Url.Host);
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{BoundPort(server)}/") };
        using HttpResponseMessage anonymous = await client.GetAsync("/api/sources");
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Equal("Bearer", anonymous.Headers.WwwAuthenticate.Single().Scheme);
        Assert.DoesNotContain("missing.mig", await anonymous.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using var bearer = new HttpRequestMessage(HttpMethod.Get, "/api/sources");
        bearer.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        using HttpResponseMessage allowed = await client.SendAsync(bearer);
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        Assert.Contains("missing.mig", await allowed.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task OversizedRequestsAreRefusedByKestrelsLimits()
    {
        // A request line over 8 KiB (a huge parameter) and headers over 32 KiB.
        using HttpResponseMessage longLine = await _client.GetAsync("/api/s/0/mem?space=pa&addr=" + new string('1', 9000));
        Assert.Equal(HttpStatusCode.RequestUriTooLong, longLine.StatusCode);
        Assert.Equal(string.Empty, await longLine.Content.ReadAsStringAsync());

        using var bigHeaders = new HttpRequestMessage(HttpMethod.Get, "/api/sources");
        bigHeaders.Headers.Add("X-Filler", new string('x', 40 << 10));
        using HttpResponseMessage headers = await _client.SendAsync(bigHeaders);
        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, headers.StatusCode);
        Assert.Equal(string.Empty, await headers.Content.ReadAsStringAsync());
    }

    [Theory]
    [MemberData(nameof(WebServerTests.PathLikeRequests), MemberType = typeof(WebServerTests))]
    public async Task PathsDecodedByKestrelNeverReachTheFileSystem(string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_server.Url, path));
        using HttpResponseMessage r = await _client.SendAsync(request);
        string body = await r.Content.ReadAsStringAsync();
        Assert.InRange((int)r.StatusCode, 400, 499);
        Assert.DoesNotContain("   at ", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", body, StringComparison.Ordinal);
        Assert.DoesNotContain("root:", body, StringComparison.Ordinal);
    }
}
