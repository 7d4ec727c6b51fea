using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using VmState.Cli.Commands;

namespace VmState.Cli.Web;

/// <summary>
/// <c>vmstate serve</c>: a web dashboard (server-rendered HTML with htmx, server-sent events for the live kernel log)
/// and its JSON API over the sources named on the command line. Kestrel on an empty host (no configuration files, no
/// static files: nothing is read from disk but the sources), one request dispatcher (<see cref="DispatchAsync"/>) over
/// fixed routes where sources are numbers, never paths.
/// </summary>
internal sealed class WebServer : IAsyncDisposable
{
    private static readonly byte[] s_htmx = ReadResource("htmx.min.js");
    private readonly WebApplication _app;
    private readonly WebAuth _auth;

    private WebServer(WebApplication app, WebServerOptions options, IReadOnlyList<WebSource> sources)
    {
        _app = app;
        Options = options;
        Sources = sources;
        _auth = new WebAuth(options.Token);
    }

    /// <summary>How the server was started.</summary>
    public WebServerOptions Options { get; }

    /// <summary>The opened sources, by index.</summary>
    public IReadOnlyList<WebSource> Sources { get; }

    /// <summary>The URL it listens on (the port resolved when 0 was asked for), without the token.</summary>
    public Uri Url { get; private set; } = null!;

    /// <summary>The host's services (the tests reach an in-process server through its <see cref="IServer"/>).</summary>
    public IServiceProvider Services => _app.Services;

    /// <summary>Cancelled when the server stops.</summary>
    public CancellationToken Stopping => _app.Lifetime.ApplicationStopping;

    /// <summary>Opens every source (a failure stays with its source), then starts listening.</summary>
    /// <exception cref="ArgumentException">A non-loopback address without a token.</exception>
    public static async Task<WebServer> StartAsync(WebServerOptions options, CancellationToken cancellationToken = default)
    {
        options.Check();
        var sources = new List<WebSource>();
        for (int i = 0; i < options.Sources.Count; i++)
        {
            sources.Add(await WebSource.OpenAsync(i, options.Sources[i], options.OpenFile, options.Attach with { Pause = false }, cancellationToken).ConfigureAwait(false));
        }

        // The empty builder reads no appsettings.json and no environment: the command line is the whole configuration.
        WebApplicationBuilder builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = 64 << 10;
            k.Limits.MaxRequestHeadersTotalSize = 32 << 10;
            k.Limits.MaxRequestLineSize = 8 << 10;
            k.Listen(options.Bind, options.Port);
        });
        options.ConfigureHost?.Invoke(builder);
        WebApplication app = builder.Build();
        var server = new WebServer(app, options, sources);
        app.Run(server.DispatchAsync);
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        // Kestrel reports the port it bound; a server put in its place by ConfigureHost (the tests' in-process
        // TestServer) may bind nothing and report no address: it is then addressed as http://localhost/.
        string? address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault();
        if (address is null)
        {
            server.Url = new Uri("http://localhost/");
            return server;
        }

        var port = new Uri(address).Port;
        string host = options.Bind.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{options.Bind}]" : options.Bind.ToString();
        if (options.Bind.Equals(IPAddress.Any) || options.Bind.Equals(IPAddress.IPv6Any))
        {
            host = Dns.GetHostName();
        }

        server.Url = new Uri($"http://{host}:{port}/");
        return server;
    }

    /// <summary>Waits until the server stops (Ctrl-C through <paramref name="cancellationToken"/>).</summary>
    public async Task RunUntilCancelledAsync(CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Stops listening, resumes guests the server paused, closes every source.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or OperationCanceledException)
        {
            // Never started.
        }

        await _app.DisposeAsync().ConfigureAwait(false);
        foreach (WebSource s in Sources)
        {
            await s.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Every request: auth, then the route, then any exception as a status and a one-line message.</summary>
    private async Task DispatchAsync(HttpContext context)
    {
        HttpResponse response = context.Response;
        response.Headers.XContentTypeOptions = "nosniff";
        response.Headers["Referrer-Policy"] = "no-referrer";
        response.Headers.XFrameOptions = "DENY";
        response.Headers.ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";
        response.Headers.CacheControl = "no-store";
        bool api = context.Request.Path.StartsWithSegments("/api", StringComparison.Ordinal);
        try
        {
            if (_auth.Check(context) is var (status, message, redirect))
            {
                if (redirect is not null)
                {
                    response.StatusCode = StatusCodes.Status303SeeOther;
                    response.Headers.Location = redirect;
                    return;
                }

                if (status == 401)
                {
                    response.Headers.WWWAuthenticate = "Bearer";
                }

                await WriteErrorAsync(context, status, message, api).ConfigureAwait(false);
                return;
            }

            string[] parts = Segments(context.Request.Path);
            await RouteAsync(context, parts, api).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException && !response.HasStarted)
        {
            (int status, string message) = e is OperationCanceledException && context.RequestAborted.IsCancellationRequested ? (499, "client went away") : WebErrors.Classify(e);
            await WriteErrorAsync(context, status, message, api).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The response had started (the live log's event stream): the client went away, or the guest's log could
            // not be read any more; the stream ends, the connection closes, nothing more can be said on it.
        }
    }

    private async Task RouteAsync(HttpContext context, string[] p, bool api)
    {
        string method = context.Request.Method;
        bool get = HttpMethods.IsGet(method) || HttpMethods.IsHead(method);
        bool post = HttpMethods.IsPost(method);
        if (!get && !post)
        {
            throw new WebRequestException(405, $"method {WebParameters.Shown(method)} is not used here");
        }

        var pages = new WebPages(this, context);
        var json = new WebApi(this, context);
        switch (p)
        {
            case [] when get:
                await pages.MachinesAsync().ConfigureAwait(false);
                return;
            case ["assets", "htmx.min.js"] when get:
                context.Response.ContentType = "text/javascript; charset=utf-8";
                context.Response.Headers.CacheControl = "max-age=86400";
                await context.Response.Body.WriteAsync(s_htmx, context.RequestAborted).ConfigureAwait(false);
                return;
            case ["assets", "vmstate.js"] when get:
                context.Response.ContentType = "text/javascript; charset=utf-8";
                await context.Response.WriteAsync(WebPages.Script, context.RequestAborted).ConfigureAwait(false);
                return;
            case ["s", string n, .. string[] rest] when !api:
                await pages.SourceAsync(Source(n), rest, post).ConfigureAwait(false);
                return;
            case ["api", "sources"] when get:
                await json.SourcesAsync().ConfigureAwait(false);
                return;
            case ["api", "s", string n, .. string[] rest]:
                await json.SourceAsync(Source(n), rest, post).ConfigureAwait(false);
                return;
            default:
                throw new WebRequestException(404, $"no page {WebParameters.Shown(context.Request.Path.Value)}");
        }
    }

    /// <summary>The source a path segment names.</summary>
    public WebSource Source(string text) => Sources[WebParameters.SourceIndex(text, Sources.Count)];

    /// <summary>The path's segments, decoded; an encoded slash or a dot segment is refused (no path is ever taken from a URL).</summary>
    private static string[] Segments(PathString path)
    {
        string value = path.Value ?? "/";
        string[] raw = value.Split('/', StringSplitOptions.RemoveEmptyEntries);
        foreach (string s in raw)
        {
            if (s is "." or ".." || s.Contains('\\', StringComparison.Ordinal) || s.Contains('\0', StringComparison.Ordinal) || s.Contains("%2f", StringComparison.OrdinalIgnoreCase) || s.Contains('/', StringComparison.Ordinal))
            {
                throw new WebRequestException(400, "paths are not parameters: sources are named by number (see /api/sources)");
            }
        }

        return raw;
    }

    /// <summary>A JSON document written by <paramref name="write"/>, indented and ending in a newline as the CLI prints it.</summary>
    public static async Task WriteJsonAsync(HttpContext context, Action<Utf8JsonWriter> write, int status = 200)
    {
        var buffer = new MemoryStream();
        CommonOptions.WriteJson(buffer, write);
        await WriteBytesAsync(context, buffer, "application/json; charset=utf-8", status).ConfigureAwait(false);
    }

    /// <summary>The bytes of <paramref name="buffer"/> as the response.</summary>
    public static async Task WriteBytesAsync(HttpContext context, MemoryStream buffer, string contentType, int status = 200)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = contentType;
        context.Response.ContentLength = buffer.Length;
        if (!HttpMethods.IsHead(context.Request.Method))
        {
            await context.Response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), context.RequestAborted).ConfigureAwait(false);
        }
    }

    /// <summary>An HTML document or fragment.</summary>
    public static Task WriteHtmlAsync(HttpContext context, string html, int status = 200) =>
        WriteBytesAsync(context, Utf8(html), "text/html; charset=utf-8", status);

    private static MemoryStream Utf8(string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        return new MemoryStream(bytes, 0, bytes.Length, writable: false, publiclyVisible: true);
    }

    private static Task WriteErrorAsync(HttpContext context, int status, string message, bool api)
    {
        if (api)
        {
            return WriteJsonAsync(context, w =>
            {
                w.WriteStartObject();
                w.WriteNumber("status", status);
                w.WriteString("error", message);
                w.WriteEndObject();
            }, status);
        }

        return WriteBytesAsync(context, Utf8($"{status}: {message}\n"), "text/plain; charset=utf-8", status);
    }

    private static byte[] ReadResource(string name)
    {
        using Stream s = typeof(WebServer).Assembly.GetManifestResourceStream(name) ?? throw new InvalidOperationException($"resource {name} missing from the build");
        var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }
}
