using System.Net;
using VmState.Export;

namespace VmState.Gdb;

/// <summary>How a <see cref="GdbRemoteServer"/> protects itself, its input and its host.</summary>
public sealed record GdbServerOptions
{
    /// <summary>Where <c>monitor save NAME</c> writes; null disables saving.</summary>
    public SaveDirectory? SaveDirectory { get; init; }

    /// <summary>
    /// The secret a client must give with <c>monitor auth TOKEN</c> before it can read or change anything; null
    /// when no authentication is required (loopback only).
    /// </summary>
    public string? Token { get; init; }

    /// <summary>
    /// Wrong tokens and refused packets (other than the memory and register reads gdb sends by itself on
    /// connecting) a client may send before authenticating; then it is disconnected.
    /// </summary>
    public int MaxAuthFailures { get; init; } = 5;

    /// <summary>A client with a token to give must give it within this time of connecting (default 2 minutes).</summary>
    public TimeSpan AuthTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>A client that sends nothing for this long is disconnected (default 10 minutes).</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>A client that does not take a reply within this time is disconnected (default 30 seconds).</summary>
    public TimeSpan WriteTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a client that connects while another is served waits for its turn (default 10 seconds).</summary>
    public TimeSpan QueueTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How many clients may wait for their turn; more are refused at once.</summary>
    public int MaxQueued { get; init; } = 4;

    /// <summary>
    /// Why listening on <paramref name="address"/> with <paramref name="token"/> is refused, or null when it is
    /// allowed: beyond loopback anyone who can reach the port could read guest memory (keys, passwords) and
    /// write files, so a token is required there.
    /// </summary>
    public static string? CheckListen(IPAddress address, string? token)
    {
        if (token is not null && token.Length == 0)
        {
            return "--token is empty";
        }

        if (IsLoopback(address) || token is not null)
        {
            return null;
        }

        return $"--listen {address} is reachable from other hosts, and a client can read all guest memory and write files; give --token TOKEN (clients then run 'monitor auth TOKEN' first) or listen on 127.0.0.1";
    }

    /// <summary>True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses.</summary>
    public static bool IsLoopback(IPAddress address) => IPAddress.IsLoopback(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address);
}
