using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using VmState.Cli.Web;
using VmState.Tests.Support;

namespace VmState.Tests.Web;

/// <summary>
/// <c>vmstate serve</c>'s server in this process on ASP.NET Core's in-process TestServer (no socket: the same app,
/// dispatcher and auth as the CLI's, with Kestrel swapped out through <see cref="WebServerOptions.ConfigureHost"/>)
/// over a small migration stream built in code and a source that does not exist: the pages and the API answer, guest
/// bytes are escaped, and every malformed, unauthorised or path-like request gets a clear 4xx without a stack trace.
/// What needs a real socket (the loopback binding, Kestrel's limits) is in <see cref="WebServerKestrelTests"/>.
/// </summary>
public sealed class WebServerTests : IAsyncLifetime
{
    private const string Token = "0123456789abcdef-test-token";
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-web-").FullName;
    private WebServer _open = null!;
    private WebServer _locked = null!;
    private HttpClient _client = null!;
    private HttpClient _lockedClient = null!;

    /// <summary>Page 2 holds guest text that would be markup if it reached the page unescaped.</summary>
    private static readonly byte[] s_hostile = Encoding.ASCII.GetBytes("<script>alert(1)</script>&\"'");

    private string Snapshot => Path.Combine(_dir, "vm.mig");

    public async Task InitializeAsync()
    {
        var b = new StreamBuilder().Block("pc.ram", 1 << 20);
        for (int i = 0; i < 8; i++)
        {
            byte[] page = Enumerable.Repeat((byte)(i + 1), 4096).ToArray();
            if (i == 2)
            {
                s_hostile.CopyTo(page, 0);
            }

            b.Page("pc.ram", (ulong)i * 4096, page);
        }

        b.Cpu(0, new ulong[16], rip: 0x1234, cr3: 0x9000);
        await File.WriteAllBytesAsync(Snapshot, b.Build());
        _open = await Start(null, allowWrites: false);
        _locked = await Start(Token, allowWrites: true);
        _client = Client(_open);
        _lockedClient = Client(_locked);
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        _lockedClient.Dispose();
        await _open.DisposeAsync();
        await _locked.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private static Vm OpenFile(string path) => Vm.Open(path);

    /// <summary>A client of the in-process server: no cookies kept, no redirects followed (TestServer's handler does neither).</summary>
    private static HttpClient Client(WebServer server, string? bearer = null)
    {
        HttpClient client = ((TestServer)server.Services.GetRequiredService<IServer>()).CreateClient();
        Assert.Equal(server.Url, client.BaseAddress);
        if (bearer is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }

        return client;
    }

    private Task<WebServer> Start(string? token, bool allowWrites) => WebServer.StartAsync(new WebServerOptions
    {
        ConfigureHost = builder => builder.WebHost.UseTestServer(),
        Sources = [new WebSourceSpec(WebSourceKind.Snapshot, Snapshot), new WebSourceSpec(WebSourceKind.Snapshot, Path.Combine(_dir, "missing.mig"))],
        Port = 0,
        Token = token,
        AllowWrites = allowWrites,
        AllowTrace = allowWrites,
        OpenFile = path => Vm.Open(path),
    });

    private async Task<(HttpStatusCode Status, string Body)> Get(string path, HttpClient? client = null)
    {
        using HttpResponseMessage r = await (client ?? _client).GetAsync(path);
        return (r.StatusCode, await r.Content.ReadAsStringAsync());
    }

    private static void AssertClean(string body)
    {
        Assert.DoesNotContain("   at ", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", body, StringComparison.Ordinal);
        Assert.DoesNotContain("root:", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheMachinesPageShowsEverySourceAndTheOneThatFailedWithItsError()
    {
        (HttpStatusCode status, string body) = await Get("/");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains("migration stream", body, StringComparison.Ordinal);
        Assert.Contains("0x1234", body, StringComparison.Ordinal);
        Assert.Contains("could not open", body, StringComparison.Ordinal);
        Assert.Contains("missing.mig", body, StringComparison.Ordinal);

        (status, body) = await Get("/api/sources");
        Assert.Equal(HttpStatusCode.OK, status);
        using JsonDocument doc = JsonDocument.Parse(body);
        Assert.Equal(2, doc.RootElement.GetArrayLength());
        Assert.False(doc.RootElement[0].TryGetProperty("error", out _));
        Assert.Contains("no such file", doc.RootElement[1].GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await Get("/api/s/1/info")).Status);
        Assert.Equal(HttpStatusCode.OK, (await Get("/api/s/0/info")).Status);
    }

    [Fact]
    public async Task TheApiInfoIsTheCliInfoJson()
    {
        (HttpStatusCode status, string body) = await Get("/api/s/0/info");
        Assert.Equal(HttpStatusCode.OK, status);
        using var cli = new MemoryStream();
        using (Vm vm = Vm.Open(Snapshot))
        {
            VmState.Cli.Commands.InfoCommand.WriteJson(vm.Machine, cli);
        }

        Assert.Equal(Encoding.UTF8.GetString(cli.ToArray()), body);
    }

    [Fact]
    public async Task MemoryIsReadByPhysicalAddressAndGuestBytesAreEscaped()
    {
        (HttpStatusCode status, string body) = await Get("/s/0/mem?space=pa&addr=0x2000&len=64");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains("0000000000002000  3c 73 63 72 69 70 74 3e", body, StringComparison.Ordinal);
        Assert.Contains("|&lt;script&gt;alert(", body, StringComparison.Ordinal);
        Assert.DoesNotContain("<script>alert", body, StringComparison.Ordinal);

        (status, body) = await Get("/api/s/0/mem?space=pa&addr=0x2000&len=32");
        Assert.Equal(HttpStatusCode.OK, status);
        using JsonDocument doc = JsonDocument.Parse(body);
        Assert.Equal(32, doc.RootElement.GetProperty("read").GetInt32());
        Assert.StartsWith(Convert.ToHexStringLower(s_hostile), doc.RootElement.GetProperty("data").GetString(), StringComparison.Ordinal);

        // Past the end of RAM: a short read that says where it stopped.
        (status, body) = await Get("/api/s/0/mem?space=pa&addr=0xff800&len=4096");
        using JsonDocument end = JsonDocument.Parse(body);
        Assert.Equal(2048, end.RootElement.GetProperty("read").GetInt32());
        Assert.Contains("0x100000 is not backed by RAM", end.RootElement.GetProperty("stopped").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/api/s/0/mem?space=pa&addr=zz", "addr")]
    [InlineData("/api/s/0/mem?space=pa", "addr is missing")]
    [InlineData("/api/s/0/mem?space=pa&addr=0&len=2m", "expected 1 to 1048576 bytes")]
    [InlineData("/api/s/0/mem?space=pa&addr=0&len=0", "expected 1 to")]
    [InlineData("/api/s/0/mem?space=pa&addr=18446744073709551616", "not a number")]
    [InlineData("/api/s/0/mem?space=pa&addr=0xffffffffffffffff&len=16", "runs past 2^64")]
    [InlineData("/api/s/0/mem?space=zz&addr=0", "expected pa or va")]
    [InlineData("/api/s/0/mem?space=pa&addr=0&pid=1", "pid goes with space=va")]
    [InlineData("/api/s/0/proc/abc/maps", "not a process id")]
    [InlineData("/api/s/0/proc/99999999/maps", "not a process id")]
    [InlineData("/api/s/0/translate?addr=0x1000&cpu=7", "vCPUs 0-0")]
    [InlineData("/s/0/mem?space=pa&addr=0&len=65537", "expected 1 to 65536 bytes")]
    [InlineData("/api/s/0/diff?a=1&b=2", "not a history store")]
    public async Task MalformedParametersAreAClear4xx(string path, string message)
    {
        (HttpStatusCode status, string body) = await Get(path);
        Assert.InRange((int)status, 400, 499);
        Assert.Contains(message, body, StringComparison.Ordinal);
        AssertClean(body);
    }

    /// <summary>Path-like requests: encoded slashes, dot segments, absolute paths, numbers that name no source.</summary>
    public static TheoryData<string> PathLikeRequests => new()
    {
        "/s/..%2F..%2Fetc%2Fpasswd",
        "/s/0/..%2F..%2F..%2Fetc%2Fpasswd",
        "/s/%2Fetc%2Fpasswd",
        "/api/s/%2Fetc%2Fpasswd/info",
        "/api/s/..%2F..%2Fetc%2Fpasswd/info",
        "/s/0/../../../../etc/passwd",
        "/s/%2e%2e/%2e%2e/etc/passwd",
        "/assets/..%2F..%2F..%2Fetc%2Fpasswd",
        "/assets/%2Fetc%2Fpasswd",
        "/s//etc/passwd",
        "/s/0/mem?space=pa&addr=/etc/passwd",
        "/s/-1",
        "/s/2",
        "/api/s/00000000001/info",
    };

    [Theory]
    [MemberData(nameof(PathLikeRequests))]
    public async Task PathsInRequestsNeverReachTheFileSystem(string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_open.Url, path));
        using HttpResponseMessage r = await _client.SendAsync(request);
        string body = await r.Content.ReadAsStringAsync();
        Assert.InRange((int)r.StatusCode, 400, 499);
        AssertClean(body);
    }

    [Fact]
    public async Task WithATokenEveryRequestWithoutItIs401()
    {
        HttpClient client = _lockedClient;
        foreach (string path in (string[])["/", "/api/sources", "/api/s/0/info", "/s/0/mem?space=pa&addr=0", "/assets/htmx.min.js", "/nothing"])
        {
            using HttpResponseMessage r = await client.GetAsync(path);
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
            Assert.Equal("Bearer", r.Headers.WwwAuthenticate.Single().Scheme);
            Assert.DoesNotContain("migration stream", await r.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using (var wrong = new HttpRequestMessage(HttpMethod.Get, "/api/sources"))
        {
            wrong.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token + "x");
            Assert.Equal(HttpStatusCode.Unauthorized, (await client.SendAsync(wrong)).StatusCode);
        }

        using (var bearer = new HttpRequestMessage(HttpMethod.Get, "/api/sources"))
        {
            bearer.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token);
            Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(bearer)).StatusCode);
        }

        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/s/0?token=wrong-token-of-some-length")).StatusCode);

        // The browser's way: ?token= once sets an HttpOnly, SameSite=Strict cookie and drops the token from the URL.
        using HttpResponseMessage first = await client.GetAsync("/s/0/mem?space=pa&token=" + Token + "&addr=0x10");
        Assert.Equal(HttpStatusCode.SeeOther, first.StatusCode);
        Assert.Equal("/s/0/mem?space=pa&addr=0x10", first.Headers.Location!.OriginalString);
        string cookie = first.Headers.GetValues("Set-Cookie").Single();
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("samesite=strict", cookie, StringComparison.OrdinalIgnoreCase);
        using var again = new HttpRequestMessage(HttpMethod.Get, "/s/0/mem?space=pa&addr=0x10");
        again.Headers.Add("Cookie", cookie.Split(';')[0]);
        using HttpResponseMessage page = await client.SendAsync(again);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("0000000000000010", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithoutATokenOnlyLoopbackHostNamesAndSameOriginPostsAreServed()
    {
        using var rebound = new HttpRequestMessage(HttpMethod.Get, "/api/sources");
        rebound.Headers.Host = "attacker.example";
        Assert.Equal(HttpStatusCode.MisdirectedRequest, (await _client.SendAsync(rebound)).StatusCode);

        using var crossSite = new HttpRequestMessage(HttpMethod.Post, "/api/s/0/pause");
        crossSite.Headers.Add("Origin", "https://attacker.example");
        Assert.Equal(HttpStatusCode.Forbidden, (await _client.SendAsync(crossSite)).StatusCode);

        // Pause and resume are for running VMs; a snapshot says so.
        using HttpResponseMessage pause = await _client.PostAsync("/api/s/0/pause", null);
        Assert.Equal(HttpStatusCode.Conflict, pause.StatusCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await _client.PutAsync("/api/s/0/info", null)).StatusCode);
    }

    [Fact]
    public async Task MemoryWritesNeedAllowWritesAndARunningVm()
    {
        using HttpResponseMessage refused = await _client.PostAsync("/api/s/0/mem?space=pa&addr=0x1000", new StringContent("90 90"));
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Contains("--allow-writes", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using HttpClient client = Client(_locked, Token);
        using HttpResponseMessage snapshot = await client.PostAsync("/api/s/0/mem?space=pa&addr=0x1000", new StringContent("90 90"));
        Assert.Equal(HttpStatusCode.Conflict, snapshot.StatusCode);
        Assert.Contains("never written", await snapshot.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using HttpResponseMessage bad = await client.PostAsync("/api/s/0/mem?space=pa&addr=0x1000", new StringContent("9g"));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        byte[] one = new byte[1];
        using (Vm vm = Vm.Open(Snapshot))
        {
            vm.Machine.Memory.Read(0x1000, one);
        }

        Assert.Equal(0x02, one[0]);
    }

    [Fact]
    public async Task TracesNeedAllowTraceATokenAndARunningVm()
    {
        // Off by default: a trace inserts breakpoints into the guest.
        (HttpStatusCode status, string body) = await Get("/api/s/0/trace/exec");
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.Contains("--allow-trace", body, StringComparison.Ordinal);
        (status, body) = await Get("/s/0/events?kind=exec");
        Assert.Equal(HttpStatusCode.Conflict, status);
        (status, body) = await Get("/api/s/0/trace/other");
        Assert.Equal(HttpStatusCode.NotFound, status);

        // Allowed, it still needs the token, a running VM (a snapshot gets 409), and a kind and symbol it knows.
        Assert.Equal(HttpStatusCode.Unauthorized, (await Get("/api/s/0/trace/exec", _lockedClient)).Status);
        using HttpClient client = Client(_locked, Token);
        (status, body) = await Get("/api/s/0/trace/exec", client);
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Contains("only running VMs can be traced", body, StringComparison.Ordinal);
        (status, body) = await Get("/api/s/1/trace/break?symbol=do_exit", client);
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Contains("not a VM", body, StringComparison.Ordinal);
        (status, body) = await Get("/s/0/events?kind=break&symbol=..%2Fetc", client);
        Assert.Equal(HttpStatusCode.Conflict, status);
        AssertClean(body);
    }
}
