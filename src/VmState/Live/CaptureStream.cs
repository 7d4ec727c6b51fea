namespace VmState.Live;

/// <summary>
/// The migration stream of a capture as its consumer sees it: read-only and forward-only over the socket QEMU writes
/// to, counting the bytes read (<see cref="Position"/>) so the capture can report its size.
/// </summary>
internal sealed class CaptureStream(Stream inner) : Stream
{
    private long _position;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException("a capture stream's length is known only at its end");

    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException("a capture stream is forward-only");
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n = inner.Read(buffer);
        _position += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int n = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        _position += n;
        return n;
    }

    /// <summary>Reads and drops what the consumer left, up to the end QEMU marks by closing the connection.</summary>
    public async Task DrainAsync(CancellationToken cancellationToken)
    {
        byte[] buffer = new byte[1 << 20];
        while (await ReadAsync(buffer, cancellationToken).ConfigureAwait(false) > 0)
        {
        }
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("a capture stream is forward-only");

    public override void SetLength(long value) => throw new NotSupportedException("a capture stream is read-only");

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("a capture stream is read-only");

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
