using System.Buffers.Binary;
using System.Text;

namespace VmState.IO;

/// <summary>
/// A forward cursor over an <see cref="IRandomAccessSource"/> with a read buffer, reading big-endian integers
/// (the migration stream and qcow2 are big-endian). Every read past the end throws a
/// <see cref="VmStateFormatException"/> naming the structure being read.
/// </summary>
public sealed class SourceCursor
{
    /// <summary>The size of the read buffer (and of a buffer <see cref="BufferExchange"/> returns).</summary>
    public const int BufferSize = 256 * 1024;

    private readonly IRandomAccessSource _source;
    private byte[] _buffer = new byte[BufferSize];
    private long _bufferStart;
    private int _bufferLength;
    private long _position;

    /// <summary>Creates a cursor at <paramref name="position"/>.</summary>
    public SourceCursor(IRandomAccessSource source, long position = 0)
    {
        _source = source;
        _position = position;
    }

    /// <summary>Current offset in the source.</summary>
    public long Position
    {
        get => _position;
        set => _position = value;
    }

    /// <summary>Length of the source.</summary>
    public long Length => _source.Length;

    /// <summary>Bytes left after the current position.</summary>
    public long Remaining => _source.Length - _position;

    /// <summary>The source being read.</summary>
    public IRandomAccessSource Source => _source;

    /// <summary>
    /// Called with the read buffer before it is refilled; returns the buffer to fill instead (of
    /// <see cref="BufferSize"/> bytes). Lets a caller keep the memory <see cref="TakeMemory"/> handed out past the
    /// refill. Null: the buffer is reused.
    /// </summary>
    public Func<byte[], byte[]>? BufferExchange { get; set; }

    /// <summary>Gets a span of <paramref name="count"/> bytes at the current position and advances past them.</summary>
    public ReadOnlySpan<byte> Take(int count, string structure)
    {
        ReadOnlySpan<byte> span = PeekSpan(count, structure);
        _position += count;
        return span;
    }

    /// <summary>
    /// Like <see cref="Take"/>, as memory inside the read buffer: valid until the buffer is refilled, or, with
    /// <see cref="BufferExchange"/>, for as long as the exchanged buffer is kept.
    /// </summary>
    public ReadOnlyMemory<byte> TakeMemory(int count, string structure)
    {
        _ = PeekSpan(count, structure);
        var memory = new ReadOnlyMemory<byte>(_buffer, (int)(_position - _bufferStart), count);
        _position += count;
        return memory;
    }

    /// <summary>
    /// The bytes from the current position to the end of what the read buffer holds, without reading (empty when the
    /// position is outside the buffer): for tight loops over many small records, which then advance with
    /// <see cref="Skip"/>.
    /// </summary>
    public ReadOnlySpan<byte> Buffered =>
        _position >= _bufferStart && _position < _bufferStart + _bufferLength
            ? _buffer.AsSpan((int)(_position - _bufferStart), (int)(_bufferStart + _bufferLength - _position))
            : [];

    /// <summary>Gets a span of <paramref name="count"/> (at most <see cref="BufferSize"/>) bytes without advancing.</summary>
    public ReadOnlySpan<byte> PeekSpan(int count, string structure)
    {
        if (count > BufferSize)
        {
            throw new ArgumentOutOfRangeException(nameof(count));
        }

        if (count > Remaining)
        {
            throw Truncated(structure, count);
        }

        if (_position < _bufferStart || _position + count > _bufferStart + _bufferLength)
        {
            Fill();
            if (_position + count > _bufferStart + _bufferLength)
            {
                throw Truncated(structure, count);
            }
        }

        return _buffer.AsSpan((int)(_position - _bufferStart), count);
    }

    /// <summary>True when at least <paramref name="count"/> bytes remain.</summary>
    public bool Has(long count) => Remaining >= count;

    /// <summary>Reads one byte.</summary>
    public byte ReadU8(string structure) => Take(1, structure)[0];

    /// <summary>Peeks one byte, or returns -1 at the end of the source.</summary>
    public int PeekU8()
    {
        if (Remaining < 1)
        {
            return -1;
        }

        return PeekSpan(1, "byte")[0];
    }

    /// <summary>Reads a big-endian 16-bit integer.</summary>
    public ushort ReadBe16(string structure) => BinaryPrimitives.ReadUInt16BigEndian(Take(2, structure));

    /// <summary>Reads a big-endian 32-bit integer.</summary>
    public uint ReadBe32(string structure) => BinaryPrimitives.ReadUInt32BigEndian(Take(4, structure));

    /// <summary>Reads a big-endian 64-bit integer.</summary>
    public ulong ReadBe64(string structure) => BinaryPrimitives.ReadUInt64BigEndian(Take(8, structure));

    /// <summary>Reads a u8-length-prefixed string (QEMU's "str8", no NUL), as Latin-1/UTF-8.</summary>
    public string ReadStr8(string structure)
    {
        int length = ReadU8(structure);
        return Encoding.UTF8.GetString(Take(length, structure));
    }

    /// <summary>Copies <paramref name="count"/> bytes into a new array (bounded by the caller).</summary>
    public byte[] ReadBytes(long count, string structure)
    {
        if (count < 0 || count > Remaining)
        {
            throw Truncated(structure, count);
        }

        byte[] result = new byte[count];
        int n = _source.Read(_position, result);
        if (n != count)
        {
            throw Truncated(structure, count);
        }

        _position += count;
        return result;
    }

    /// <summary>Advances by <paramref name="count"/> bytes, which must exist.</summary>
    public void Skip(long count, string structure)
    {
        if (count < 0 || count > Remaining)
        {
            throw Truncated(structure, count);
        }

        _position += count;
    }

    /// <summary>Builds the exception for a structure that runs past the end of the source.</summary>
    public VmStateFormatException Truncated(string structure, long needed) =>
        new(_position, structure, $"truncated: {needed} more bytes expected but the input ends at {_source.Length}");

    private void Fill()
    {
        if (BufferExchange is not null)
        {
            byte[] next = BufferExchange(_buffer);
            if (next.Length != BufferSize)
            {
                throw new InvalidOperationException($"the exchanged read buffer has {next.Length} bytes, not {BufferSize}");
            }

            _buffer = next;
            _bufferLength = 0;
        }

        _bufferStart = _position;
        _bufferLength = _source.Read(_position, _buffer);
    }
}
