using System.Globalization;

namespace VmState.Events;

/// <summary>
/// QEMU's gdbstub as <c>query-chardev</c> shows it: the character device labelled <c>gdb</c> (QEMU 7.2
/// <c>gdbserver_start</c> creates it for <c>-gdb</c>, <c>-s</c> and HMP <c>gdbserver</c> alike), whose filename is
/// <c>disconnected:tcp:HOST:PORT,server=on</c> while no client is connected and
/// <c>tcp:HOST:PORT,server=on &lt;-&gt; PEER:PORT</c> while one is.
/// </summary>
/// <param name="Host">The host to connect to (a wildcard listen address becomes 127.0.0.1).</param>
/// <param name="Port">The TCP port.</param>
/// <param name="Peer">The connected client, or null when the stub is free.</param>
/// <param name="Listen">The address QEMU listens on, as its chardev says (empty for every interface).</param>
public sealed record GdbStubChardev(string Host, int Port, string? Peer, string Listen)
{
    /// <summary>The label QEMU gives the stub's character device.</summary>
    public const string Label = "gdb";

    /// <summary>True when a client holds the stub.</summary>
    public bool InUse => Peer is not null;

    /// <summary>
    /// True when the stub listens on more than loopback (every interface, or a network address): it has no
    /// authentication, so whoever reaches that address can read and change the VM.
    /// </summary>
    public bool ListensBeyondLoopback =>
        !(Listen.StartsWith("127.", StringComparison.Ordinal) || Listen is "::1" or "localhost");

    /// <summary>host:port.</summary>
    public string Endpoint => $"{Host}:{Port.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>
    /// Parses the chardev filename of a TCP stub; false for anything else (a UNIX socket stub, another backend).
    /// Never throws.
    /// </summary>
    public static bool TryParse(string filename, out GdbStubChardev? stub)
    {
        stub = null;
        ArgumentNullException.ThrowIfNull(filename);
        string rest = filename.StartsWith("disconnected:", StringComparison.Ordinal) ? filename["disconnected:".Length..] : filename;
        if (!rest.StartsWith("tcp:", StringComparison.Ordinal))
        {
            return false;
        }

        rest = rest[4..];
        string? peer = null;
        int arrow = rest.IndexOf(" <-> ", StringComparison.Ordinal);
        if (arrow >= 0)
        {
            peer = rest[(arrow + 5)..].Trim();
            rest = rest[..arrow];
        }

        int comma = rest.IndexOf(',', StringComparison.Ordinal);
        string address = comma < 0 ? rest : rest[..comma];
        int colon = address.LastIndexOf(':');
        if (colon < 0 || !int.TryParse(address.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is 0 or > 65535)
        {
            return false;
        }

        string listen = address[..colon].Trim('[', ']');
        string host = listen.Trim(':').Length == 0 || listen == "0.0.0.0" ? "127.0.0.1" : listen;
        stub = new GdbStubChardev(host, port, peer, listen.Trim(':').Length == 0 ? string.Empty : listen);
        return true;
    }
}
