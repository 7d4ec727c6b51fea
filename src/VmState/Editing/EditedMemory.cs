using VmState.Memory;

namespace VmState.Editing;

/// <summary>
/// A snapshot's guest-physical memory as edited so far (<see cref="SnapshotEditor.Memory"/>): reads see the edits
/// made through the editor, writes are edits (validated and logged like <see cref="SnapshotEditor.WritePhysical"/>)
/// that reach the file only when the editor saves. The GDB server reads and writes guest memory through it.
/// </summary>
public sealed class EditedMemory : IWritableMemory
{
    private readonly IPhysicalMemory _original;
    private readonly SnapshotEditor _editor;

    internal EditedMemory(IPhysicalMemory original, SnapshotEditor editor)
    {
        _original = original;
        _editor = editor;
    }

    /// <inheritdoc />
    public string Name => _original.Name;

    /// <inheritdoc />
    public IReadOnlyList<MemoryRange> Ranges => _original.Ranges;

    /// <inheritdoc />
    public int Read(ulong address, Span<byte> destination)
    {
        int done = 0;
        foreach (RangePiece p in _original.Ranges.Pieces(address, destination.Length))
        {
            _editor.Stream.ReadPhysical(p.Address, destination.Slice(p.Offset, p.Length));
            done = p.Offset + p.Length;
        }

        return done;
    }

    /// <inheritdoc />
    /// <exception cref="InvalidEditException">A backed byte that is not RAM the stream can carry (nothing is written then).</exception>
    public int Write(ulong address, ReadOnlySpan<byte> source)
    {
        int backed = 0;
        foreach (RangePiece p in _original.Ranges.Pieces(address, source.Length))
        {
            backed = p.Offset + p.Length;
        }

        if (backed > 0)
        {
            _editor.WritePhysical(address, source[..backed]);
        }

        return backed;
    }
}
