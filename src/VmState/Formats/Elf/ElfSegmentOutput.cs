using Microsoft.Win32.SafeHandles;

namespace VmState.Formats.Elf;

/// <summary>
/// The file bytes of one PT_LOAD segment, handed to its <see cref="ElfSegmentSource"/> while the core is emitted:
/// positional writes at offsets relative to the segment, refused outside it, so a source cannot overwrite the
/// headers or a neighbouring segment.
/// </summary>
public sealed class ElfSegmentOutput
{
    private readonly SafeFileHandle _file;

    internal ElfSegmentOutput(SafeFileHandle file, ElfCoreSegment segment, long fileOffset)
    {
        _file = file;
        Segment = segment;
        FileOffset = fileOffset;
    }

    /// <summary>The segment being written.</summary>
    public ElfCoreSegment Segment { get; }

    /// <summary>Where the segment's bytes start in the file (its <c>p_offset</c>).</summary>
    public long FileOffset { get; }

    /// <summary>How many bytes the segment has in the file (its <c>p_filesz</c>).</summary>
    public ulong Length => Segment.FileSize;

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/> bytes into the segment.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The bytes do not lie inside the segment.</exception>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset > Length || (ulong)data.Length > Length - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"{data.Length} bytes at offset 0x{offset:x} do not fit in the segment's 0x{Length:x} file bytes");
        }

        RandomAccess.Write(_file, data, FileOffset + (long)offset);
    }

    /// <summary>
    /// Writes <paramref name="buffers"/> one after the other at <paramref name="offset"/> bytes into the segment, with
    /// gathered writes (<c>pwritev</c>): the buffers are not copied into one first.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The bytes do not lie inside the segment.</exception>
    public void Write(ulong offset, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
    {
        ArgumentNullException.ThrowIfNull(buffers);
        ulong total = 0;
        foreach (ReadOnlyMemory<byte> b in buffers)
        {
            total += (ulong)b.Length;
        }

        if (offset > Length || total > Length - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"{total} bytes at offset 0x{offset:x} do not fit in the segment's 0x{Length:x} file bytes");
        }

        RandomAccess.Write(_file, buffers, FileOffset + (long)offset);
    }
}
