namespace VmState.IO;

/// <summary>
/// A read-only, random-access byte source: a file, a window of a file, or the vmstate area of a qcow2 snapshot.
/// A short read (fewer bytes than asked) happens only at the end of the source.
/// </summary>
public interface IRandomAccessSource : IDisposable
{
    /// <summary>Total length in bytes.</summary>
    long Length { get; }

    /// <summary>A short description for messages (usually the file path).</summary>
    string Name { get; }

    /// <summary>Reads up to <c>destination.Length</c> bytes at <paramref name="offset"/>; returns the count read.</summary>
    int Read(long offset, Span<byte> destination);
}
