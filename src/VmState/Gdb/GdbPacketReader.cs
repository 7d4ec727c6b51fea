using System.Text;

namespace VmState.Gdb;

/// <summary>
/// Reads the client side of the GDB remote serial protocol (GDB manual, "Overview" of the Remote Protocol):
/// <c>$data#cs</c> packets with a two-digit checksum and <c>}</c> escapes, ^C interrupts, and acknowledgements,
/// which are skipped. Memory stays bounded whatever arrives: a packet longer than the bound is consumed and
/// reported as <see cref="GdbPacketKind.TooLong"/>, never buffered.
/// </summary>
internal sealed class GdbPacketReader
{
    private readonly Stream _stream;
    private readonly byte[] _input = new byte[4096];
    private readonly byte[] _payload;
    private int _start;
    private int _end;

    /// <summary>Reads from <paramref name="stream"/>, accepting packets of up to <paramref name="maxPayload"/> bytes.</summary>
    public GdbPacketReader(Stream stream, int maxPayload)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPayload, 1);
        _stream = stream;
        _payload = new byte[maxPayload];
    }

    /// <summary>The next packet or interrupt, or null when the stream ends (also in the middle of a packet).</summary>
    public async ValueTask<GdbPacket?> ReadAsync(CancellationToken cancellationToken)
    {
        // Outside a packet: '+' and '-' acknowledge our replies (the transport is reliable, so a '-' is not acted
        // on), ^C interrupts, and anything else is line noise the protocol says to skip.
        while (true)
        {
            int b = await NextAsync(cancellationToken).ConfigureAwait(false);
            if (b < 0)
            {
                return null;
            }

            if (b == 0x03)
            {
                return new GdbPacket(GdbPacketKind.Interrupt, string.Empty);
            }

            if (b == '$')
            {
                break;
            }
        }

        int length = 0;
        byte sum = 0;
        bool escaped = false;
        bool tooLong = false;
        while (true)
        {
            int b = await NextAsync(cancellationToken).ConfigureAwait(false);
            if (b < 0)
            {
                return null;
            }

            if (b == '#')
            {
                break;
            }

            // The checksum covers the bytes as sent, escapes included.
            sum += (byte)b;
            if (tooLong)
            {
                continue;
            }

            byte value = (byte)b;
            if (escaped)
            {
                value ^= 0x20;
                escaped = false;
            }
            else if (b == '}')
            {
                escaped = true;
                continue;
            }

            if (length == _payload.Length)
            {
                tooLong = true;
                continue;
            }

            _payload[length++] = value;
        }

        int high = await NextAsync(cancellationToken).ConfigureAwait(false);
        int low = high < 0 ? -1 : await NextAsync(cancellationToken).ConfigureAwait(false);
        if (low < 0)
        {
            return null;
        }

        if (HexValue(high) is not int h || HexValue(low) is not int l || ((h << 4) | l) != sum)
        {
            return new GdbPacket(GdbPacketKind.BadChecksum, string.Empty);
        }

        if (tooLong)
        {
            return new GdbPacket(GdbPacketKind.TooLong, string.Empty);
        }

        return escaped
            ? new GdbPacket(GdbPacketKind.Malformed, string.Empty)
            : new GdbPacket(GdbPacketKind.Packet, Encoding.Latin1.GetString(_payload, 0, length));
    }

    private async ValueTask<int> NextAsync(CancellationToken ct)
    {
        if (_start == _end)
        {
            _start = 0;
            _end = await _stream.ReadAsync(_input, ct).ConfigureAwait(false);
            if (_end <= 0)
            {
                _end = 0;
                return -1;
            }
        }

        return _input[_start++];
    }

    private static int? HexValue(int c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => null,
    };
}
