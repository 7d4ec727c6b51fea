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
        if (offset >= Length || destination.IsEmpty)
        {
            return 0;
        }

        int total = 0;
        while (total < destination.Length)
        {
            int n = RandomAccess.Read(_handle, destination[total..], offset + total);
            if (n <= 0)
            {
                break;
            }

            total += n;
        }

        return total;
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
