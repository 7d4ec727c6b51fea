using System.Security.Cryptography;
using System.Text;

namespace VmState.Gdb;

/// <summary>
/// One connection's authentication (<see cref="GdbServerOptions.Token"/>). Before <c>monitor auth TOKEN</c>, gdb's
/// connection handshake is answered so that gdb connects and the user can type the monitor command (gdb sends none
/// before it is connected), but nothing about the guest is revealed: registers read as zeros; memory, writes, other
/// monitor commands and saving are refused, and a client that keeps sending refused packets or wrong tokens is
/// disconnected.
/// </summary>
internal sealed class GdbAuthentication
{
    // gdb's connection handshake is about 20 packets; a client that sends this many refused ones without
    // authenticating only holds the one client slot.
    private const int MaxUnauthenticatedPackets = 256;

    private readonly GdbServerOptions _options;
    private readonly TextWriter _log;
    private readonly GdbCommandDispatcher _dispatcher;
    private int _authFailures;
    private int _unauthenticatedPackets;

    public GdbAuthentication(GdbServerOptions options, TextWriter log, GdbCommandDispatcher dispatcher)
    {
        _options = options;
        _log = log;
        _dispatcher = dispatcher;
        Authenticated = options.Token is null;
    }

    /// <summary>True once the client gave the token (from the start when the server has none).</summary>
    public bool Authenticated { get; private set; }

    /// <summary>The answer to packet <paramref name="p"/> of a client that has not authenticated yet.</summary>
    public GdbAnswer Handle(string p)
    {
        if (p.StartsWith("qRcmd,", StringComparison.Ordinal))
        {
            string command;
            try
            {
                command = GdbCommandDispatcher.DecodeMonitorCommand(p["qRcmd,".Length..]);
            }
            catch (FormatException)
            {
                return Refuse(null);
            }

            string[] words = command.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries);
            if (words.Length == 2 && words[0] == "auth")
            {
                if (TokenMatches(words[1]))
                {
                    Authenticated = true;
                    _log.WriteLine("gdbserver: client authenticated");
                    return new GdbAnswer("OK", "authenticated; run 'maintenance flush register-cache' (flushregs) to load the registers");
                }

                _log.WriteLine("gdbserver: wrong token");
                return Refuse("wrong token");
            }

            return Refuse("authentication required: monitor auth TOKEN");
        }

        switch (p)
        {
            case "":
                return new GdbAnswer(GdbReplies.Malformed);
            case "g":
                // Zeros, not 'x' (unavailable): gdb 13 gives up the connection when the PC is unavailable, and the
                // user could then never type 'monitor auth'.
                return new GdbAnswer(new string('0', _dispatcher.Target.RegisterBlockSize * 2));
            case "?":
            case "QStartNoAckMode":
            case "vMustReplyEmpty":
            case "qAttached":
            case "qfThreadInfo":
            case "qsThreadInfo":
            case "qC":
            case "D":
                return _dispatcher.Handle(p, CancellationToken.None);
            case "k":
                // Ends this connection only: an unauthenticated client must not stop the server for everyone.
                return new GdbAnswer(string.Empty, End: true);
        }

        if (p.StartsWith("qSupported", StringComparison.Ordinal) || p.StartsWith("qXfer:features:read:", StringComparison.Ordinal)
            || p[0] == 'H' || p.StartsWith("qTStatus", StringComparison.Ordinal) || p.StartsWith("qOffsets", StringComparison.Ordinal)
            || p.StartsWith("qSymbol", StringComparison.Ordinal) || p.StartsWith("vCont?", StringComparison.Ordinal))
        {
            return _dispatcher.Handle(p, CancellationToken.None);
        }

        // Reads are what gdb itself sends after connecting (the frame at the zero PC): refused without counting,
        // so the user can still authenticate. Anything else is a client that is not gdb waiting for 'monitor auth'.
        return Refuse(null, counted: p[0] is not ('m' or 'p') && !p.StartsWith("qThreadExtraInfo", StringComparison.Ordinal));
    }

    private GdbAnswer Refuse(string? message, bool counted = true)
    {
        if (counted)
        {
            _authFailures++;
        }

        if (_authFailures >= _options.MaxAuthFailures || ++_unauthenticatedPackets > MaxUnauthenticatedPackets)
        {
            _log.WriteLine($"gdbserver: {_authFailures} wrong tokens or refused packets, {_unauthenticatedPackets} packets in all, before authentication; disconnecting");
            return new GdbAnswer(GdbReplies.NotAuthenticated, message is null ? null : message + "; disconnecting", End: true);
        }

        return new GdbAnswer(GdbReplies.NotAuthenticated, message);
    }

    private bool TokenMatches(string given)
    {
        // Hashing first makes both sides the same length, so the comparison time says nothing about the token's
        // length either; FixedTimeEquals then compares without an early exit.
        byte[] a = SHA256.HashData(Encoding.UTF8.GetBytes(given));
        byte[] b = SHA256.HashData(Encoding.UTF8.GetBytes(_options.Token!));
        return CryptographicOperations.FixedTimeEquals(a, b);
    }
}
