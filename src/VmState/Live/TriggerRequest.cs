using System.Text;

namespace VmState.Live;

/// <summary>
/// A guest's request for a snapshot, as it arrives on the virtio-serial port <see cref="PortName"/>: one line
/// <c>SNAP &lt;nonce&gt; &lt;label&gt;</c>, answered with <c>OK &lt;nonce&gt; &lt;snapshot id&gt;</c> or
/// <c>ERR &lt;nonce&gt; &lt;reason&gt;</c> (the repo's <c>guest/vmstate-trigger</c> is the guest side).
/// </summary>
/// <param name="Nonce">The requester's token, echoed in the answer (1–64 of <c>A–Z a–z 0–9 . _ : -</c>).</param>
/// <param name="Label">The requester's label for the snapshot (1–200 printable characters).</param>
public sealed record TriggerRequest(string Nonce, string Label)
{
    /// <summary>The name of the virtio-serial port the guest writes its requests to.</summary>
    public const string PortName = "org.vmstate.trigger.0";

    /// <summary>The longest request line read (its newline excluded); longer ones are refused.</summary>
    public const int MaxLineBytes = 1024;

    /// <summary>The longest nonce.</summary>
    public const int MaxNonceLength = 64;

    /// <summary>The longest label.</summary>
    public const int MaxLabelLength = 200;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Parses one request line (without its newline; a trailing carriage return is allowed).</summary>
    /// <exception cref="TriggerProtocolException">The line is not a valid request; its nonce, when one could be read, is in the exception.</exception>
    public static TriggerRequest Parse(ReadOnlySpan<byte> line)
    {
        if (line.Length > MaxLineBytes)
        {
            throw new TriggerProtocolException($"request of {line.Length} bytes, longer than {MaxLineBytes}", null);
        }

        if (line.Length > 0 && line[^1] == (byte)'\r')
        {
            line = line[..^1];
        }

        string text;
        try
        {
            text = StrictUtf8.GetString(line);
        }
        catch (DecoderFallbackException)
        {
            throw new TriggerProtocolException("request is not valid UTF-8", null);
        }

        if (!text.StartsWith("SNAP ", StringComparison.Ordinal))
        {
            string word = text.Split(' ', 2)[0];
            throw new TriggerProtocolException($"unknown request '{Printable(word, 16)}' (expected 'SNAP <nonce> <label>')", null);
        }

        string rest = text[5..];
        int space = rest.IndexOf(' ', StringComparison.Ordinal);
        string nonce = space < 0 ? rest : rest[..space];
        if (nonce.Length == 0 || nonce.Length > MaxNonceLength || !nonce.All(IsNonceChar))
        {
            throw new TriggerProtocolException($"nonce must be 1-{MaxNonceLength} of A-Z a-z 0-9 . _ : -", null);
        }

        string label = space < 0 ? string.Empty : rest[(space + 1)..];
        if (label.Length == 0)
        {
            throw new TriggerProtocolException("request has no label (expected 'SNAP <nonce> <label>')", nonce);
        }

        if (label.Length > MaxLabelLength)
        {
            throw new TriggerProtocolException($"label of {label.Length} characters, longer than {MaxLabelLength}", nonce);
        }

        if (label.Any(char.IsControl))
        {
            throw new TriggerProtocolException("label has control characters", nonce);
        }

        return new TriggerRequest(nonce, label);
    }

    /// <summary>The answer line for a request that was carried out (with its newline).</summary>
    public static string Ok(string nonce, string snapshotId) => $"OK {nonce} {snapshotId}\n";

    /// <summary>The answer line for a request that was refused or failed (with its newline; the nonce "-" when unknown).</summary>
    public static string Error(string? nonce, string reason) =>
        $"ERR {nonce ?? "-"} {Printable(reason, 400)}\n";

    private static bool IsNonceChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or ':' or '-';

    private static string Printable(string s, int max)
    {
        var b = new StringBuilder(Math.Min(s.Length, max));
        foreach (char c in s)
        {
            if (b.Length >= max)
            {
                break;
            }

            b.Append(char.IsControl(c) ? '?' : c);
        }

        return b.ToString();
    }
}

/// <summary>A guest's trigger request that does not follow the protocol; it is answered with <c>ERR</c> and the agent goes on.</summary>
public sealed class TriggerProtocolException : VmStateException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong with the request.</param>
    /// <param name="nonce">The request's nonce, when it could be read (the answer carries it).</param>
    public TriggerProtocolException(string message, string? nonce)
        : base(message) => Nonce = nonce;

    /// <summary>The request's nonce, or null when it could not be read.</summary>
    public string? Nonce { get; }
}
