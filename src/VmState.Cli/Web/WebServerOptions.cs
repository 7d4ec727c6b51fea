using System.Net;
using Microsoft.AspNetCore.Builder;

namespace VmState.Cli.Web;

/// <summary>What <c>vmstate serve</c> serves and how.</summary>
internal sealed class WebServerOptions
{
    /// <summary>The sources, in the order of the command line (their indexes in URLs).</summary>
    public required IReadOnlyList<WebSourceSpec> Sources { get; init; }

    /// <summary>The address to listen on (loopback by default).</summary>
    public IPAddress Bind { get; init; } = IPAddress.Loopback;

    /// <summary>The TCP port; 0 picks a free one.</summary>
    public int Port { get; init; } = 8417;

    /// <summary>The token every request must carry; null only on a loopback address.</summary>
    public string? Token { get; init; }

    /// <summary>Allow memory writes to running VMs.</summary>
    public bool AllowWrites { get; init; }

    /// <summary>Allow live event streams: traces that insert breakpoints into running VMs (<see cref="WebTrace"/>).</summary>
    public bool AllowTrace { get; init; }

    /// <summary>Opens a snapshot file (the CLI's options: index cache, kernel location, --raw).</summary>
    public required Func<string, Vm> OpenFile { get; init; }

    /// <summary>How running VMs are attached (never paused by attaching).</summary>
    public VmAttachOptions Attach { get; init; } = new();

    /// <summary>How often the live kernel log is polled for the page's live tail.</summary>
    public TimeSpan LogPollInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Called on the host builder after Kestrel is configured and before the host is built; null (the CLI) leaves
    /// Kestrel listening on <see cref="Bind"/>:<see cref="Port"/>. The tests put ASP.NET Core's in-process TestServer
    /// in Kestrel's place here, so the CLI itself never references the test host.
    /// </summary>
    public Action<WebApplicationBuilder>? ConfigureHost { get; init; }

    /// <summary>True when <paramref name="address"/> is a loopback address (127.0.0.0/8, ::1).</summary>
    public static bool IsLoopback(IPAddress address) => IPAddress.IsLoopback(address);

    /// <summary>
    /// Refuses a non-loopback address without a token: anyone who reaches the port could read all guest memory.
    /// </summary>
    /// <exception cref="ArgumentException">Non-loopback bind without a token, or a token too short to resist guessing.</exception>
    public void Check()
    {
        if (Token is null && !IsLoopback(Bind))
        {
            throw new ArgumentException($"listening on {Bind} (not loopback) needs a token (--token T, or --token generate)");
        }

        if (Token is not null && Token.Length < 16)
        {
            throw new ArgumentException("--token: use at least 16 characters (or --token generate)");
        }
    }
}
