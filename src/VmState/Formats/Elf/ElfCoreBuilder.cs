using System.Buffers.Binary;

namespace VmState.Formats.Elf;

/// <summary>
/// An ELF64 little-endian core file (ET_CORE) to write, in the three steps of a careful object-file writer: this
/// model (header fields, notes, PT_LOAD segments with a source for their bytes), <see cref="Verify"/> (every reason
/// the model cannot be written, at once), <see cref="Layout"/> (file offsets) and
/// <see cref="ElfCoreLayout.WriteTo(IO.OutputFile, CancellationToken)"/> (the bytes). Machine cores
/// (<see cref="ElfCoreWriter"/>) and process cores (<c>Linux.ProcessCore</c>) are both built with it.
/// </summary>
/// <remarks>
/// The file is laid out as QEMU's <c>dump-guest-memory</c> and the kernel's <c>fs/binfmt_elf.c</c> lay out cores:
/// the ELF header; with 65,535 or more program headers (PN_XNUM, System V gABI "Program Header") section header 0,
/// whose <c>sh_info</c> holds the real count; the program headers, a PT_NOTE first and then the PT_LOADs in the
/// order added; the notes; then, from the next multiple of <see cref="DataAlignment"/>, each segment's file bytes in
/// order (moved up where a segment's alignment asks <c>p_offset</c> ≡ <c>p_vaddr</c>). An alias segment gets no bytes
/// of its own: it points into the bytes of the segment it aliases.
/// </remarks>
public sealed class ElfCoreBuilder
{
    /// <summary>The largest note name (with its NUL) that <see cref="ElfNote.DecodeAll(ReadOnlySpan{byte}, long)"/>, and so <see cref="ElfCoreReader"/>, reads back.</summary>
    public const int MaxNoteNameSize = 4096;

    private readonly List<(ElfNote? Note, byte[]? Encoded)> _notes = [];
    private readonly List<ElfCoreSegment> _segments = [];
    private readonly long _dataAlignment = 4096;

    /// <summary><c>e_machine</c>; x86-64 unless set.</summary>
    public ushort Machine { get; init; } = ElfConstants.EmX86_64;

    /// <summary><c>e_flags</c>; 0 unless set.</summary>
    public uint Flags { get; init; }

    /// <summary><c>p_align</c> of the PT_NOTE header (QEMU writes 0, the kernel 4).</summary>
    public ulong NoteAlignment { get; init; }

    /// <summary>Where segment data may start: the first multiple of this after the headers and notes (4096 unless set).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not a power of two.</exception>
    public long DataAlignment
    {
        get => _dataAlignment;
        init
        {
            if (value <= 0 || (value & (value - 1)) != 0)
            {
                throw new ArgumentOutOfRangeException(nameof(DataAlignment), value, "must be a power of two");
            }

            _dataAlignment = value;
        }
    }

    /// <summary>The PT_LOAD segments, in the order added (program headers 1 onwards).</summary>
    public IReadOnlyList<ElfCoreSegment> Segments => _segments;

    /// <summary>How many notes were added.</summary>
    public int NoteCount => _notes.Count;

    /// <summary>Program headers the core has: the PT_NOTE and one per segment.</summary>
    public long ProgramHeaderCount => 1L + _segments.Count;

    /// <summary>Adds a note to the PT_NOTE segment, after those added before it.</summary>
    public void AddNote(ElfNote note)
    {
        ArgumentNullException.ThrowIfNull(note);
        ArgumentNullException.ThrowIfNull(note.Name, nameof(note));
        ArgumentNullException.ThrowIfNull(note.Descriptor, nameof(note));
        _notes.Add((note, null));
    }

    /// <summary>
    /// Adds one note given already encoded (header, name, descriptor and their padding), written byte for byte: a
    /// note taken from the guest (VMCOREINFO) is carried as the guest wrote it.
    /// </summary>
    public void AddEncodedNote(byte[] encoded)
    {
        ArgumentNullException.ThrowIfNull(encoded);
        _notes.Add((null, encoded));
    }

    /// <summary>Adds a PT_LOAD with file bytes of its own, written by <paramref name="source"/> (null: all zero, a hole).</summary>
    /// <param name="virtualAddress"><c>p_vaddr</c>.</param>
    /// <param name="physicalAddress"><c>p_paddr</c>.</param>
    /// <param name="flags"><c>p_flags</c>.</param>
    /// <param name="alignment"><c>p_align</c>.</param>
    /// <param name="fileSize"><c>p_filesz</c>.</param>
    /// <param name="memorySize"><c>p_memsz</c>.</param>
    /// <param name="source">Writes the file bytes when the core is emitted; never called when <paramref name="fileSize"/> is 0.</param>
    public ElfCoreSegment AddLoad(ulong virtualAddress, ulong physicalAddress, uint flags, ulong alignment, ulong fileSize, ulong memorySize, ElfSegmentSource? source)
    {
        var segment = new ElfCoreSegment(this, _segments.Count, virtualAddress, physicalAddress, flags, alignment, fileSize, memorySize, source, null, 0);
        _segments.Add(segment);
        return segment;
    }

    /// <summary>
    /// Adds a PT_LOAD whose <paramref name="size"/> file bytes the caller has already written at
    /// <paramref name="fileOffset"/> (a one-pass writer that filled the file while reading its input). The headers and
    /// notes must end at or before it (<see cref="Verify"/> says when they do not), and the segments the builder lays
    /// out follow the last placed one. Placed segments may be aliased like any other.
    /// </summary>
    public ElfCoreSegment AddPlaced(ulong virtualAddress, ulong physicalAddress, uint flags, ulong alignment, ulong size, long fileOffset)
    {
        var segment = new ElfCoreSegment(this, _segments.Count, virtualAddress, physicalAddress, flags, alignment, size, size, null, null, 0) { PlacedAt = fileOffset };
        _segments.Add(segment);
        return segment;
    }

    /// <summary>
    /// Adds a PT_LOAD whose <paramref name="size"/> file bytes are those of <paramref name="target"/> from
    /// <paramref name="offset"/> on (no data is written twice): the same bytes seen at another address.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="target"/> belongs to another builder or is itself an alias.</exception>
    public ElfCoreSegment AddAlias(ElfCoreSegment target, ulong offset, ulong virtualAddress, ulong physicalAddress, uint flags, ulong alignment, ulong size)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (target.Owner != this)
        {
            throw new ArgumentException("the aliased segment belongs to another ELF core", nameof(target));
        }

        if (target.AliasOf is not null)
        {
            throw new ArgumentException($"segment {target.Index} is itself an alias; alias the segment that has the bytes", nameof(target));
        }

        var segment = new ElfCoreSegment(this, _segments.Count, virtualAddress, physicalAddress, flags, alignment, size, size, null, target, offset);
        _segments.Add(segment);
        return segment;
    }

    /// <summary>Every reason the core cannot be written as it stands; empty when it can.</summary>
    public IReadOnlyList<string> Verify()
    {
        var problems = new List<string>();
        if (ProgramHeaderCount > uint.MaxValue)
        {
            problems.Add($"{ProgramHeaderCount} program headers: ELF64 counts at most {uint.MaxValue} (PN_XNUM's sh_info is 32 bits)");
        }

        if (NoteAlignment > 1 && (NoteAlignment & (NoteAlignment - 1)) != 0)
        {
            problems.Add($"the PT_NOTE alignment {NoteAlignment} is not a power of two");
        }

        long notesSize = 0;
        for (int i = 0; i < _notes.Count; i++)
        {
            (ElfNote? note, byte[]? encoded) = _notes[i];
            string? problem = note is not null ? NoteProblem(note) : EncodedNoteProblem(encoded!);
            if (problem is not null)
            {
                problems.Add($"note {i}: {problem}");
            }

            notesSize += note?.EncodedSize ?? encoded!.Length;
        }

        foreach (ElfCoreSegment s in _segments)
        {
            string where = $"segment {s.Index} (p_vaddr 0x{s.VirtualAddress:x})";
            if (s.FileSize > s.MemorySize)
            {
                problems.Add($"{where}: p_filesz 0x{s.FileSize:x} is larger than p_memsz 0x{s.MemorySize:x}");
            }

            if (s.Alignment > 1 && (s.Alignment & (s.Alignment - 1)) != 0)
            {
                problems.Add($"{where}: alignment {s.Alignment} is not a power of two");
            }

            if (s.MemorySize > 0 && s.MemorySize - 1 > ulong.MaxValue - s.VirtualAddress)
            {
                problems.Add($"{where}: p_vaddr + p_memsz 0x{s.MemorySize:x} wraps the 64-bit address space");
            }

            if (s.MemorySize > 0 && s.MemorySize - 1 > ulong.MaxValue - s.PhysicalAddress)
            {
                problems.Add($"{where}: p_paddr 0x{s.PhysicalAddress:x} + p_memsz 0x{s.MemorySize:x} wraps the 64-bit address space");
            }

            if (s.FileSize > long.MaxValue)
            {
                problems.Add($"{where}: p_filesz 0x{s.FileSize:x} is larger than a file can be");
            }

            if (s.PlacedAt is long placed && (placed < 0 || s.FileSize > (ulong)(long.MaxValue - placed)))
            {
                problems.Add($"{where}: its 0x{s.FileSize:x} file bytes placed at offset {placed} do not fit in a file");
            }

            if (s.AliasOf is ElfCoreSegment target && (s.AliasOffset > target.FileSize || s.FileSize > target.FileSize - s.AliasOffset))
            {
                problems.Add($"{where}: as an alias of segment {target.Index}, its 0x{s.FileSize:x} bytes at offset 0x{s.AliasOffset:x} run past that segment's 0x{target.FileSize:x} file bytes into other data");
            }
        }

        long headerSize = HeaderSize(notesSize);
        if (headerSize > Array.MaxLength)
        {
            problems.Add($"the headers and notes take {headerSize} bytes, more than the {Array.MaxLength} bytes they are built in");
        }

        if (problems.Count == 0)
        {
            // Offsets are computed only for a model whose sizes are sane, in checked arithmetic.
            long[] offsets;
            try
            {
                offsets = SegmentOffsets(headerSize, out _);
            }
            catch (OverflowException)
            {
                problems.Add("the segments' file bytes add up to more than a file can hold (2^63 - 1 bytes)");
                return problems;
            }

            foreach (ElfCoreSegment s in _segments)
            {
                if (s.PlacedAt is long placed && placed < headerSize)
                {
                    problems.Add($"segment {s.Index} (p_vaddr 0x{s.VirtualAddress:x}): its bytes were placed at offset 0x{placed:x}, inside the 0x{headerSize:x} bytes of headers and notes");
                }

                if ((s.AliasOf is not null || s.PlacedAt is not null) && s.Alignment > 1 && ((ulong)offsets[s.Index] - s.VirtualAddress) % s.Alignment != 0)
                {
                    problems.Add($"segment {s.Index} (p_vaddr 0x{s.VirtualAddress:x}): its p_offset 0x{offsets[s.Index]:x} is fixed ({(s.AliasOf is null ? "placed by the caller" : $"as an alias of segment {s.AliasOf.Index}")}) and is not congruent to p_vaddr modulo its alignment {s.Alignment}");
                }
            }
        }

        return problems;
    }

    /// <summary>Lays the core out: where each header, the notes and each segment's bytes go.</summary>
    /// <exception cref="InvalidOperationException">The core cannot be written (<see cref="Verify"/> lists why).</exception>
    public ElfCoreLayout Layout()
    {
        IReadOnlyList<string> problems = Verify();
        if (problems.Count > 0)
        {
            throw new InvalidOperationException($"the ELF core cannot be written: {string.Join("; ", problems)}");
        }

        byte[] notes = EncodeNotes();
        long headerSize = HeaderSize(notes.Length);
        long[] offsets = SegmentOffsets(headerSize, out long fileSize);
        return new ElfCoreLayout(this, [.. _segments], notes, offsets, fileSize);
    }

    internal bool Extended => ProgramHeaderCount >= ElfConstants.PnXnum;

    internal long SectionHeaderOffset => Extended ? ElfConstants.Elf64HeaderSize : 0;

    internal long ProgramHeaderOffset => ElfConstants.Elf64HeaderSize + (Extended ? ElfConstants.Elf64ShdrSize : 0);

    internal long NotesOffset => ProgramHeaderOffset + (ProgramHeaderCount * ElfConstants.Elf64PhdrSize);

    private long HeaderSize(long notesSize) => NotesOffset + notesSize;

    /// <summary>The file offset of each segment's bytes (an alias: inside its target's), and the file's size.</summary>
    private long[] SegmentOffsets(long headerSize, out long fileSize)
    {
        long[] offsets = new long[_segments.Count];
        long next = checked((headerSize + _dataAlignment - 1) & ~(_dataAlignment - 1));
        long placedEnd = next;
        foreach (ElfCoreSegment s in _segments)
        {
            if (s.PlacedAt is long placed)
            {
                offsets[s.Index] = placed;
                placedEnd = Math.Max(placedEnd, checked(placed + (long)s.FileSize));
            }
        }

        // Segments laid out here start after the placed ones, aligned; with none, the file ends where the data does.
        fileSize = placedEnd;
        next = checked((placedEnd + _dataAlignment - 1) & ~(_dataAlignment - 1));

        foreach (ElfCoreSegment s in _segments)
        {
            if (s.AliasOf is not null || s.PlacedAt is not null)
            {
                continue;
            }

            long at = next;
            if (s.Alignment > 1)
            {
                // p_offset ≡ p_vaddr (mod p_align), as the gABI asks of loadable segments.
                at = checked(at + (long)((s.VirtualAddress - (ulong)at) & (s.Alignment - 1)));
            }

            offsets[s.Index] = at;
            if (s.FileSize > 0)
            {
                next = checked(at + (long)s.FileSize);
                fileSize = next;
            }
        }

        foreach (ElfCoreSegment s in _segments)
        {
            if (s.AliasOf is ElfCoreSegment target)
            {
                offsets[s.Index] = offsets[target.Index] + (long)s.AliasOffset;
            }
        }

        return offsets;
    }

    private byte[] EncodeNotes()
    {
        long size = 0;
        foreach ((ElfNote? note, byte[]? encoded) in _notes)
        {
            size += note?.EncodedSize ?? encoded!.Length;
        }

        byte[] bytes = new byte[size];
        int pos = 0;
        foreach ((ElfNote? note, byte[]? encoded) in _notes)
        {
            if (note is not null)
            {
                pos += note.Encode(bytes.AsSpan(pos));
            }
            else
            {
                encoded!.CopyTo(bytes, pos);
                pos += encoded.Length;
            }
        }

        return bytes;
    }

    private static string? NoteProblem(ElfNote note)
    {
        foreach (char c in note.Name)
        {
            if (c is '\0' or > '\x7f')
            {
                return $"the name \"{note.Name}\" holds a character that is not ASCII or is NUL";
            }
        }

        if (note.Name.Length + 1 > MaxNoteNameSize)
        {
            return $"the name has {note.Name.Length} characters; at most {MaxNoteNameSize - 1} can be read back";
        }

        return null;
    }

    private static string? EncodedNoteProblem(byte[] note)
    {
        if (note.Length < 12 || note.Length % 4 != 0)
        {
            return $"{note.Length} encoded bytes are not a 12-byte note header with 4-byte aligned name and descriptor";
        }

        ulong nameSize = BinaryPrimitives.ReadUInt32LittleEndian(note);
        ulong descSize = BinaryPrimitives.ReadUInt32LittleEndian(note.AsSpan(4));
        ulong size = 12 + ((nameSize + 3) & ~3UL) + ((descSize + 3) & ~3UL);
        if (nameSize > MaxNoteNameSize)
        {
            return $"name size {nameSize}; at most {MaxNoteNameSize} can be read back";
        }

        return size == (ulong)note.Length ? null : $"name size {nameSize} and descriptor size {descSize} make a {size}-byte note, not the {note.Length} bytes given";
    }
}
