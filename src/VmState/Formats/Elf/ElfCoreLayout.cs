using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using VmState.IO;

namespace VmState.Formats.Elf;

/// <summary>
/// An <see cref="ElfCoreBuilder"/> laid out: where the headers, the notes and every segment's bytes go. Taken from
/// the builder when <see cref="ElfCoreBuilder.Layout"/> ran (segments added later are not part of it).
/// <see cref="WriteTo(SafeFileHandle, CancellationToken)"/> emits the file.
/// </summary>
public sealed class ElfCoreLayout
{
    private readonly ElfCoreSegment[] _segments;
    private readonly byte[] _notes;
    private readonly long[] _offsets;
    private readonly ushort _machine;
    private readonly uint _flags;
    private readonly ulong _noteAlignment;

    internal ElfCoreLayout(ElfCoreBuilder core, ElfCoreSegment[] segments, byte[] notes, long[] offsets, long fileSize)
    {
        _segments = segments;
        _notes = notes;
        _offsets = offsets;
        _machine = core.Machine;
        _flags = core.Flags;
        _noteAlignment = core.NoteAlignment;
        ProgramHeaderCount = core.ProgramHeaderCount;
        ExtendedNumbering = core.Extended;
        SectionHeaderOffset = core.SectionHeaderOffset;
        ProgramHeaderOffset = core.ProgramHeaderOffset;
        NotesOffset = core.NotesOffset;
        FileSize = fileSize;
    }

    /// <summary>Program headers: the PT_NOTE and one per segment.</summary>
    public long ProgramHeaderCount { get; }

    /// <summary>
    /// Whether the count is too large for <c>e_phnum</c> (65,535 or more): then <c>e_phnum</c> is PN_XNUM (0xffff),
    /// section header 0 at <see cref="SectionHeaderOffset"/> holds the count in <c>sh_info</c>, and <c>e_shnum</c> is 1.
    /// </summary>
    public bool ExtendedNumbering { get; }

    /// <summary><c>e_shoff</c>: right after the ELF header with <see cref="ExtendedNumbering"/>, else 0 (no section headers).</summary>
    public long SectionHeaderOffset { get; }

    /// <summary><c>e_phoff</c>.</summary>
    public long ProgramHeaderOffset { get; }

    /// <summary>Where the notes start (the PT_NOTE's <c>p_offset</c>), right after the program headers.</summary>
    public long NotesOffset { get; }

    /// <summary>The notes' size (the PT_NOTE's <c>p_filesz</c>).</summary>
    public long NotesSize => _notes.Length;

    /// <summary>The size of the file.</summary>
    public long FileSize { get; }

    /// <summary>The <c>p_offset</c> of <paramref name="segment"/> (for an alias, inside its target's bytes).</summary>
    /// <exception cref="ArgumentException">The segment is not part of this layout.</exception>
    public long OffsetOf(ElfCoreSegment segment)
    {
        ArgumentNullException.ThrowIfNull(segment);
        if (segment.Index >= _segments.Length || _segments[segment.Index] != segment)
        {
            throw new ArgumentException($"segment {segment.Index} is not part of this layout", nameof(segment));
        }

        return _offsets[segment.Index];
    }

    /// <summary>Writes the core into <paramref name="output"/>'s temporary (not committed).</summary>
    public void WriteTo(OutputFile output, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(output);
        WriteTo(output.Handle, cancellationToken);
    }

    /// <summary>
    /// Writes the core into <paramref name="file"/> from offset 0: sets its length to <see cref="FileSize"/> (so what no
    /// source writes is a hole), writes the headers and notes, then calls each segment's source in segment order.
    /// </summary>
    public void WriteTo(SafeFileHandle file, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(file);
        RandomAccess.SetLength(file, FileSize);
        RandomAccess.Write(file, EncodeHeaders(), 0);
        foreach (ElfCoreSegment s in _segments)
        {
            if (s.Source is not null && s.FileSize > 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
                s.Source(new ElfSegmentOutput(file, s, _offsets[s.Index]), cancellationToken);
            }
        }
    }

    /// <summary>The ELF header, section header 0 when needed, the program headers and the notes.</summary>
    internal byte[] EncodeHeaders()
    {
        byte[] header = new byte[NotesOffset + _notes.Length];
        Span<byte> h = header;
        "\x7f"u8.CopyTo(h);
        "ELF"u8.CopyTo(h[1..]);
        h[4] = 2; // ELFCLASS64
        h[5] = 1; // ELFDATA2LSB
        h[6] = 1; // EV_CURRENT
        BinaryPrimitives.WriteUInt16LittleEndian(h[16..], ElfConstants.EtCore);
        BinaryPrimitives.WriteUInt16LittleEndian(h[18..], _machine);
        BinaryPrimitives.WriteUInt32LittleEndian(h[20..], 1); // e_version
        BinaryPrimitives.WriteUInt64LittleEndian(h[32..], (ulong)ProgramHeaderOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(h[40..], (ulong)SectionHeaderOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(h[48..], _flags);
        BinaryPrimitives.WriteUInt16LittleEndian(h[52..], ElfConstants.Elf64HeaderSize);
        BinaryPrimitives.WriteUInt16LittleEndian(h[54..], ElfConstants.Elf64PhdrSize);
        BinaryPrimitives.WriteUInt16LittleEndian(h[56..], ExtendedNumbering ? ElfConstants.PnXnum : (ushort)ProgramHeaderCount);
        BinaryPrimitives.WriteUInt16LittleEndian(h[58..], ElfConstants.Elf64ShdrSize);
        BinaryPrimitives.WriteUInt16LittleEndian(h[60..], (ushort)(ExtendedNumbering ? 1 : 0)); // e_shnum; e_shstrndx stays SHN_UNDEF
        if (ExtendedNumbering)
        {
            // Section header 0 is SHT_NULL with the program header count in sh_info (gABI, "Program Header": PN_XNUM);
            // sh_size and sh_link stay 0 since e_shnum and e_shstrndx hold their real values.
            BinaryPrimitives.WriteUInt32LittleEndian(h[(int)(SectionHeaderOffset + 44)..], (uint)ProgramHeaderCount);
        }

        int pos = (int)ProgramHeaderOffset;
        WriteProgramHeader(h[pos..], ElfConstants.PtNote, 0, (ulong)NotesOffset, 0, 0, (ulong)_notes.Length, (ulong)_notes.Length, _noteAlignment);
        foreach (ElfCoreSegment s in _segments)
        {
            pos += ElfConstants.Elf64PhdrSize;
            WriteProgramHeader(h[pos..], ElfConstants.PtLoad, s.Flags, (ulong)_offsets[s.Index], s.VirtualAddress, s.PhysicalAddress, s.FileSize, s.MemorySize, s.Alignment);
        }

        _notes.CopyTo(header, NotesOffset);
        return header;
    }

    private static void WriteProgramHeader(Span<byte> p, uint type, uint flags, ulong offset, ulong vaddr, ulong paddr, ulong filesz, ulong memsz, ulong align)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(p, type);
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], flags);
        BinaryPrimitives.WriteUInt64LittleEndian(p[8..], offset);
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], vaddr);
        BinaryPrimitives.WriteUInt64LittleEndian(p[24..], paddr);
        BinaryPrimitives.WriteUInt64LittleEndian(p[32..], filesz);
        BinaryPrimitives.WriteUInt64LittleEndian(p[40..], memsz);
        BinaryPrimitives.WriteUInt64LittleEndian(p[48..], align);
    }
}
