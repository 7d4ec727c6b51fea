using Microsoft.Win32.SafeHandles;

namespace VmState.IO;

/// <summary>A file opened read-only (the input is never modified) and read with positional reads.</summary>
public sealed class FileSource : IRandomAccessSource
{
    private readonly SafeFileHandle _handle;
    private readonly bool _ownsHandle;

    /// <summary>Opens <paramref name="path"/> for reading.</summary>
    public FileSource(string path)
    {
        _handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        _ownsHandle = true;
        Name = path;
        Length = RandomAccess.GetLength(_handle);
    }

    /// <summary>Wraps an already opened handle; the handle stays owned by the caller.</summary>
    public FileSource(SafeFileHandle handle, string name)
    {
        _handle = handle;
        Name = name;
        Length = RandomAccess.GetLength(handle);
    }

    /// <inheritdoc />
    public long Length { get; }

    /// <inheritdoc />
    public string Name { get; }

    /// <summary>The underlying handle (for bulk copies).</summary>
    public SafeFileHandle Handle => _handle;

    /// <inheritdoc />
    public int Read(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset >= Length || destination.IsEmpty)
        {
            return 0;
        }

        int wanted = (int)Math.Min(destination.Length, Length - offset);
        ReadExactly(_handle, Name, Length, offset, destination[..wanted]);
        return wanted;
    }

    /// <summary>
    /// Fills <paramref name="destination"/> from <paramref name="offset"/>, which lies inside the
    /// <paramref name="openedLength"/> the file had when opened; a file that ends sooner now was truncated or
    /// rewritten meanwhile, and that is an <see cref="InputChangedException"/>, never silently short data.
    /// </summary>
    internal static void ReadExactly(SafeFileHandle handle, string name, long openedLength, long offset, Span<byte> destination)
    {
        int total = 0;
        while (total < destination.Length)
        {
            int n = RandomAccess.Read(handle, destination[total..], offset + total);
            if (n <= 0)
            {
                throw new InputChangedException(name, offset + total, openedLength, RandomAccess.GetLength(handle));
            }

            total += n;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsHandle)
        {
            _handle.Dispose();
        }
    }
}
