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
}
