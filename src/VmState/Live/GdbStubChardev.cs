using System.Globalization;

namespace VmState.Live;

/// <summary>
/// QEMU's gdbstub as <c>query-chardev</c> shows it: the character device labelled <c>gdb</c> (QEMU 7.2
/// <c>gdbserver_start</c> creates it for <c>-gdb</c>, <c>-s</c> and HMP <c>gdbserver</c> alike), whose filename is
/// <c>disconnected:tcp:HOST:PORT,server=on</c> while no client is connected and
/// <c>tcp:HOST:PORT,server=on &lt;-&gt; PEER:PORT</c> while one is; a stub on a UNIX socket shows
/// <c>disconnected:unix:PATH,server=on</c> and <c>unix:PATH,server=on</c> (no peer named).
/// </summary>
/// <param name="Host">The host to connect to (a wildcard listen address becomes 127.0.0.1); empty for a UNIX socket.</param>
/// <param name="Port">The TCP port; 0 for a UNIX socket.</param>
/// <param name="Peer">The connected client, or null when the stub is free.</param>
/// <param name="Listen">The address QEMU listens on, as its chardev says (empty for every interface).</param>
public sealed record GdbStubChardev(string Host, int Port, string? Peer, string Listen)
{
    /// <summary>The label QEMU gives the stub's character device.</summary>
    public const string Label = "gdb";

    /// <summary>The path of the UNIX socket the stub listens on, or null for a TCP stub.</summary>
    public string? SocketPath { get; init; }

    /// <summary>True when a client holds the stub.</summary>
    public bool InUse => Peer is not null;

    /// <summary>
    /// True when the stub listens on more than loopback (every interface, or a network address): it has no
    /// authentication, so whoever reaches that address can read and change the VM.
    /// </summary>
    public bool ListensBeyondLoopback => SocketPath is null &&
        !(Listen.StartsWith("127.", StringComparison.Ordinal) || Listen is "::1" or "localhost");

    /// <summary>
    /// The warning to give a user whose stub <see cref="ListensBeyondLoopback"/> (null when it does not): what is exposed
    /// and how to start a stub that is not.
    /// </summary>
    public string? ExposureWarning => ListensBeyondLoopback
        ? $"QEMU's gdbstub listens on {(Listen.Length == 0 ? "every interface" : Listen)} port {Port.ToString(CultureInfo.InvariantCulture)}, not only on loopback: it has no authentication, so anyone who reaches it can read and change the VM (start it with HMP \"gdbserver tcp:127.0.0.1:PORT\", or let vmstate start one)"
        : null;

    /// <summary>host:port, or <c>unix:PATH</c>.</summary>
    public string Endpoint => SocketPath is string path ? "unix:" + path : $"{Host}:{Port.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>
    /// Parses the chardev filename of a TCP or UNIX-socket stub; false for anything else (another backend, a
    /// malformed name). Never throws.
    /// </summary>
    public static bool TryParse(string filename, out GdbStubChardev? stub)
    {
        stub = null;
        ArgumentNullException.ThrowIfNull(filename);
        bool disconnected = filename.StartsWith("disconnected:", StringComparison.Ordinal);
        string rest = disconnected ? filename["disconnected:".Length..] : filename;
        if (rest.StartsWith("unix:", StringComparison.Ordinal))
        {
            // qemu_chr_compute_filename: "unix:PATH" and ",server=on" for a listening socket.
            string path = rest[5..];
            int options = path.IndexOf(',', StringComparison.Ordinal);
            path = options < 0 ? path : path[..options];
            if (path.Length == 0)
            {
                return false;
            }

            stub = new GdbStubChardev(string.Empty, 0, disconnected ? null : "a client on the socket", path) { SocketPath = path };
            return true;
        }

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
