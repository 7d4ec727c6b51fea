namespace VmState.Live;

/// <summary>
/// Reads newline-terminated lines from the trigger port's stream with a bound: a line longer than
/// <see cref="TriggerRequest.MaxLineBytes"/> is skipped up to its newline and reported as a
/// <see cref="TriggerProtocolException"/>, so a guest cannot make the agent buffer without limit.
/// </summary>
public sealed class TriggerLineReader
{
    private readonly Stream _stream;
    private readonly byte[] _buffer = new byte[4096];
    private readonly byte[] _line = new byte[TriggerRequest.MaxLineBytes];
    private int _start;
    private int _end;

    /// <summary>Reads lines from <paramref name="stream"/>.</summary>
    public TriggerLineReader(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _stream = stream;
    }

    /// <summary>The next line without its newline, or null at the end of the stream (a last line without newline is dropped).</summary>
    /// <exception cref="TriggerProtocolException">The line was longer than the bound (it was skipped).</exception>
    public async ValueTask<byte[]?> ReadLineAsync(CancellationToken cancellationToken = default)
    {
        int length = 0;
        bool tooLong = false;
        while (true)
        {
            if (_start == _end)
            {
                _start = 0;
                _end = await _stream.ReadAsync(_buffer, cancellationToken).ConfigureAwait(false);
                if (_end == 0)
                {
                    return null;
                }
            }

            int newline = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
            int stop = newline < 0 ? _end : newline;
            int take = stop - _start;
            if (!tooLong && length + take <= _line.Length)
            {
                Array.Copy(_buffer, _start, _line, length, take);
                length += take;
            }
            else
            {
                tooLong = true;
            }

            _start = newline < 0 ? _end : newline + 1;
            if (newline >= 0)
            {
                if (tooLong)
                {
                    throw new TriggerProtocolException($"request longer than {TriggerRequest.MaxLineBytes} bytes", null);
                }

                return _line[..length];
            }
        }
    }
}
