using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmState.IO;
using VmState.Memory;
using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>
/// Reads a QEMU migration stream (the format of <c>migrate</c> to a file, <c>savevm</c> vmstate and the body of
/// <c>virsh save</c> files) as QEMU 7.2 writes it, tolerating the 8.x–10.x additions (COMMAND sections such as
/// SWITCHOVER_START, MULTIFD_FLUSH markers, the "configuration" key in the VM description). RAM is indexed, not
/// loaded: each page's stream offset is recorded.
/// </summary>
public static class MigrationStreamReader
{
    /// <summary>"QEVM".</summary>
    public const uint Magic = 0x5145564D;

    internal const byte SectionEof = 0x00;
    internal const byte SectionStart = 0x01;
    internal const byte SectionPart = 0x02;
    internal const byte SectionEnd = 0x03;
    internal const byte SectionFull = 0x04;
    internal const byte SectionSubsection = 0x05;
    internal const byte SectionVmDescription = 0x06;
    internal const byte SectionConfiguration = 0x07;
    internal const byte SectionCommand = 0x08;
    internal const byte SectionFooter = 0x7E;

    // RAM record flags, QEMU 7.2 migration/ram.c (MULTIFD_FLUSH from 8.1).
    internal const ulong RamFull = 0x01;
    internal const ulong RamZero = 0x02;
    internal const ulong RamMemSize = 0x04;
    internal const ulong RamPage = 0x08;
    internal const ulong RamEos = 0x10;
    internal const ulong RamContinue = 0x20;
    internal const ulong RamXbzrle = 0x40;
    private const ulong RamHook = 0x80;
    private const ulong RamCompressPage = 0x100;
    internal const ulong RamMultifdFlush = 0x200;

    /// <summary>Opens and parses the stream in file <paramref name="path"/>.</summary>
    public static MigrationStream Open(string path, ReaderLimits? limits = null, IProgress<double>? progress = null)
    {
        var source = new FileSource(path);
        try
        {
            return Read(source, limits, progress, ownsSource: true);
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Parses the stream in <paramref name="source"/>; <paramref name="ram"/>, when given, sees every RAM page record
    /// as the parse meets it (one pass over the stream for jobs that use all of RAM, such as extract).
    /// </summary>
    public static MigrationStream Read(IRandomAccessSource source, ReaderLimits? limits = null, IProgress<double>? progress = null, bool ownsSource = false, IRamStreamObserver? ram = null) =>
        Read(source, limits, progress, ownsSource, ram, ramIndex: null);

    /// <summary>
    /// Parses the stream in <paramref name="source"/>; with <paramref name="ramIndex"/> (a RAM index made by an
    /// earlier parse of the same bytes) each RAM chunk is skipped and its pages come from the index, so
    /// <paramref name="ram"/> must then be null (it would see no page).
    /// </summary>
    /// <exception cref="RamIndexMismatchException">
    /// The index does not fit the stream, or the stream does not parse with it (a jump to where the index says a
    /// chunk ends landed elsewhere than a section); nothing was disposed, parse again without it.
    /// </exception>
    internal static MigrationStream Read(IRandomAccessSource source, ReaderLimits? limits, IProgress<double>? progress, bool ownsSource, IRamStreamObserver? ram, RamIndexRecord? ramIndex)
    {
        if (ramIndex is null)
        {
            return Parse(source, limits, progress, ownsSource, ram, null);
        }

        if (ram is not null)
        {
            throw new ArgumentException("a replayed RAM index skips the page records a RAM observer would see", nameof(ram));
        }

        try
        {
            return Parse(source, limits, progress, ownsSource, null, ramIndex);
        }
        catch (VmStateFormatException e)
        {
            throw new RamIndexMismatchException(e.Offset, $"the stream does not parse with the index: {e.Message}");
        }
    }

    private static MigrationStream Parse(IRandomAccessSource source, ReaderLimits? limits, IProgress<double>? progress, bool ownsSource, IRamStreamObserver? ram, RamIndexRecord? ramIndex)
    {
        limits ??= ReaderLimits.Default;
        var cursor = new SourceCursor(source);
        if (ram is not null)
        {
            cursor.BufferExchange = ram.ExchangeBuffer;
        }

        uint magic = cursor.ReadBe32("stream header");
        if (magic != Magic)
        {
            throw new VmStateFormatException(0, "stream header", $"expected the magic \"QEVM\" (0x5145564d), found 0x{magic:x8}");
        }

        uint version = cursor.ReadBe32("stream header");
        if (version != 3)
        {
            string why = version == 2 ? "version 2 is the obsolete compat format QEMU itself rejects" : "only version 3 exists";
            throw new VmStateFormatException(4, "stream header", $"expected version 3, found {version} ({why})");
        }

        var warnings = new List<string>();
        (VmDescription? description, long vmdescOffset) = LocateDescription(source, limits);
        if (description is null)
        {
            warnings.Add("the stream has no VM description (JSON) after its EOF; device sections cannot be delimited");
        }

        // Device data ends at the EOF byte just before the description (QEMU 7.2 savevm.c writes the sections,
        // then QEMU_VM_EOF, then QEMU_VM_VMDESCRIPTION), so no field the description claims can reach past it.
        var budget = new DeviceDecodeBudget(limits, vmdescOffset >= 0 ? vmdescOffset - 1 : source.Length);
        var state = new ParseState(source, limits, description, description?.PageSize ?? 4096, budget) { Observer = ram, Replay = ramIndex };
        int sections = 0;
        bool sawEof = false;
        while (!sawEof)
        {
            if (++sections > limits.MaxSections)
            {
                throw new VmStateFormatException(cursor.Position, "section", $"more than {limits.MaxSections} sections");
            }

            progress?.Report((double)cursor.Position / source.Length);
            long sectionStart = cursor.Position;
            byte type = cursor.ReadU8("section type");
            switch (type)
            {
                case SectionEof:
                    sawEof = true;
                    break;
                case SectionConfiguration:
                    ReadConfiguration(cursor, state);
                    break;
                case SectionStart:
                case SectionFull:
                    ReadFullHeaderSection(cursor, state, type, sectionStart);
                    break;
                case SectionPart:
                case SectionEnd:
                    ReadShortHeaderSection(cursor, state, type, sectionStart);
                    break;
                case SectionCommand:
                    ReadCommand(cursor, state, sectionStart);
                    break;
                case SectionVmDescription:
                    throw new VmStateFormatException(sectionStart, "section", "found the VM description (0x06) before the EOF section");
                case SectionSubsection:
                    throw new VmStateFormatException(sectionStart, "section", "found a subsection marker (0x05) where a section was expected; the previous section's description does not match its bytes");
                default:
                    throw new VmStateFormatException(sectionStart, "section", $"unknown section type 0x{type:x2} (expected 0x00-0x08)");
            }
        }

        CheckEndMatchesDescription(cursor.Position - 1, cursor.Position, source.Length, state, vmdescOffset);
        if (ramIndex is not null && state.RamChunks.Count != ramIndex.Chunks.Count)
        {
            throw new RamIndexMismatchException(cursor.Position, $"the stream has {state.RamChunks.Count} RAM chunks, the index {ramIndex.Chunks.Count}");
        }

        if (state.RamSectionId is not null && !state.RamEnded)
        {
            warnings.Add("the ram section has no END chunk (a background snapshot, or an incomplete migration): RAM is as of the snapshot start");
        }

        warnings.AddRange(state.Warnings);
        progress?.Report(1.0);
        return new MigrationStream(source, state.MachineType, state.Capabilities, state.Blocks, state.Devices, description,
            vmdescOffset, warnings, state.PageSize, ownsSource)
        {
            LastRamEosOffset = state.LastRamEosOffset,
            RamChunks = state.RamChunks,
            RamIndexFromCache = ramIndex is not null,
        };
    }

    /// <summary>
    /// The EOF section must be where the stream's own description says the stream ends: QEMU 7.2
    /// <c>qemu_savevm_state_complete_precopy_non_iterable</c> writes one FULL section per description entry, then
    /// QEMU_VM_EOF, then the description and nothing else. A corrupt byte read as EOF would otherwise end the
    /// stream early and yield a machine without vCPUs or devices, silently.
    /// </summary>
    private static void CheckEndMatchesDescription(long eofOffset, long afterEof, long length, ParseState state, long vmdescOffset)
    {
        const string S = "EOF section";
        if (state.Description is null)
        {
            if (afterEof != length)
            {
                throw new VmStateFormatException(eofOffset, S,
                    $"{length - afterEof} bytes follow the EOF byte but they are not a VM description (expected 0x06, a be32 length and JSON reaching the end of the input, or nothing)");
            }

            return;
        }

        if (afterEof != vmdescOffset)
        {
            throw new VmStateFormatException(eofOffset, S,
                $"an EOF byte at {eofOffset}, but the VM description starts at {vmdescOffset}: expected the EOF byte at {vmdescOffset - 1}; the {vmdescOffset - afterEof} bytes between them were never read (a corrupt section type read as EOF?)");
        }

        var counted = new Dictionary<(string, int), int>();
        var missing = new List<string>();
        foreach (DeviceDescription d in state.Description.Devices)
        {
            int n = counted.TryGetValue((d.Name, d.InstanceId), out int c) ? c + 1 : 1;
            counted[(d.Name, d.InstanceId)] = n;
            int seen = state.SeenSections.TryGetValue((d.Name, d.InstanceId), out int s) ? s : 0;
            if (seen < n)
            {
                missing.Add($"\"{d.Name}\" instance {d.InstanceId}");
            }
        }

        if (missing.Count > 0)
        {
            string list = string.Join(", ", missing.Take(5)) + (missing.Count > 5 ? $" and {missing.Count - 5} more" : string.Empty);
            throw new VmStateFormatException(eofOffset, S,
                $"the stream ends here but its VM description lists {missing.Count} device section(s) that never appeared: {list}");
        }
    }

    /// <summary>
    /// Finds the VM description: a 0x06 byte followed by a be32 length L that reaches exactly to the end of the
    /// input, then '{'. Searched backwards from the end, over at most the description size limit.
    /// </summary>
    internal static (VmDescription? Description, long Offset) LocateDescription(IRandomAccessSource source, ReaderLimits limits)
    {
        long length = source.Length;
        long lowest = Math.Max(8, length - limits.MaxVmDescriptionBytes - 5);
        // 64 KiB windows: the description is found in the first one or two, and a buffer below the large object heap's
        // threshold costs no GC (a 1 MiB one did, on a small stream a noticeable share of the run).
        const int Window = 64 << 10;
        byte[] buffer = new byte[Window + 5];
        long windowEnd = length;
        while (windowEnd > lowest)
        {
            long windowStart = Math.Max(lowest, windowEnd - Window);
            int count = (int)Math.Min(windowEnd - windowStart + 5, length - windowStart);
            int n = source.Read(windowStart, buffer.AsSpan(0, count));
            for (int i = (int)(windowEnd - windowStart) - 1; i >= 0; i--)
            {
                if (buffer[i] != SectionVmDescription || i + 5 >= n)
                {
                    continue;
                }

                long pos = windowStart + i;
                uint jsonLength = BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(i + 1, 4));
                if (pos + 5 + jsonLength != length || buffer[i + 5] != (byte)'{')
                {
                    continue;
                }

                byte[] json = new byte[jsonLength];
                if (source.Read(pos + 5, json) != json.Length)
                {
                    throw new VmStateFormatException(pos, "VM description", "could not read the JSON");
                }

                return (VmDescription.Parse(json, pos + 5), pos);
            }

            windowEnd = windowStart;
        }

        return (null, -1);
    }

    private static void ReadConfiguration(SourceCursor cursor, ParseState state)
    {
        const string S = "configuration section";
        long start = cursor.Position;
        uint length = cursor.ReadBe32(S);
        if (length > 256)
        {
            throw new VmStateFormatException(start, S, $"machine type name of {length} bytes (expected at most 256)");
        }

        state.MachineType = System.Text.Encoding.UTF8.GetString(cursor.Take((int)length, S));

        // Subsections of the "configuration" vmsd (QEMU 7.2 migration/savevm.c): target-page-bits, capabilities, uuid.
        while (cursor.PeekU8() == SectionSubsection)
        {
            long subStart = cursor.Position;
            cursor.ReadU8(S);
            string name = cursor.ReadStr8(S);
            cursor.ReadBe32(S);
            switch (name)
            {
                case "configuration/target-page-bits":
                    uint bits = cursor.ReadBe32(S);
                    if (bits is < 10 or > 24)
                    {
                        throw new VmStateFormatException(subStart, S, $"target page bits {bits} (expected 10-24)");
                    }

                    state.PageSize = 1 << (int)bits;
                    break;
                case "configuration/capabilities":
                    uint count = cursor.ReadBe32(S);
                    if (count > 64)
                    {
                        throw new VmStateFormatException(subStart, S, $"{count} capabilities (expected at most 64)");
                    }

                    for (uint i = 0; i < count; i++)
                    {
                        state.Capabilities.Add(cursor.ReadStr8(S));
                    }

                    break;
                case "configuration/uuid":
                    cursor.Skip(16, S);
                    break;
                default:
                    throw new VmStateFormatException(subStart, S, $"unknown subsection \"{name}\" (known: configuration/target-page-bits, configuration/capabilities, configuration/uuid)");
            }
        }

        foreach (string cap in state.Capabilities)
        {
            if (cap == "mapped-ram")
            {
                throw new VmStateFormatException(start, S, "the stream uses the mapped-ram capability (QEMU 9.0+ fixed-offset RAM), which this reader does not support yet");
            }
        }

        ReadFooter(cursor, state, 0, allowMissing: true);
    }

    private static void ReadFullHeaderSection(SourceCursor cursor, ParseState state, byte type, long sectionStart)
    {
        string kind = type == SectionStart ? "START section" : "FULL section";
        int sectionId = (int)cursor.ReadBe32(kind);
        string idStr = cursor.ReadStr8(kind);
        int instanceId = (int)cursor.ReadBe32(kind);
        int version = (int)cursor.ReadBe32(kind);
        string structure = $"{kind} \"{idStr}\" (id {sectionId}, instance {instanceId})";

        if (idStr == "ram")
        {
            if (state.RamSectionId is not null)
            {
                throw new VmStateFormatException(sectionStart, structure, "a second ram section");
            }

            if (version != 4)
            {
                throw new VmStateFormatException(sectionStart, structure, $"ram section version {version} (expected 4)");
            }

            state.RamSectionId = sectionId;
            ReadOrReplayRamChunk(cursor, state, first: true);
            if (type == SectionFull)
            {
                state.RamEnded = true;
            }

            ReadFooter(cursor, state, sectionId, allowMissing: true);
            return;
        }

        if (type == SectionStart)
        {
            throw new VmStateFormatException(sectionStart, structure,
                "an iterable section other than ram (e.g. block migration or dirty-bitmap); only ram is supported");
        }

        long bodyStart = cursor.Position;
        int occurrence = state.SeenSections.TryGetValue((idStr, instanceId), out int seen) ? seen : 0;
        state.SeenSections[(idStr, instanceId)] = occurrence + 1;
        DeviceDescription? description = state.Description?.Find(idStr, instanceId, occurrence);
        if (description is null)
        {
            string why = state.Description is null
                ? "the stream has no VM description, so the section's length cannot be known"
                : "the VM description has no entry for it, so its length cannot be known";
            throw new VmStateFormatException(bodyStart, structure, why);
        }

        if (state.Devices.Count >= state.Limits.MaxSections)
        {
            throw new VmStateFormatException(sectionStart, structure, "too many device sections");
        }

        VmsdState decoded = DeviceSectionDecoder.Decode(cursor, description.Vmsd with { Version = version }, idStr, state.Budget);
        state.Devices.Add(new DeviceState(idStr, instanceId, sectionId, bodyStart, cursor.Position - bodyStart, decoded));
        ReadFooter(cursor, state, sectionId, allowMissing: true);
    }

    private static void ReadShortHeaderSection(SourceCursor cursor, ParseState state, byte type, long sectionStart)
    {
        string kind = type == SectionPart ? "PART section" : "END section";
        int sectionId = (int)cursor.ReadBe32(kind);
        if (sectionId != state.RamSectionId)
        {
            throw new VmStateFormatException(sectionStart, kind, $"section id {sectionId} does not belong to a started iterable section (ram is {state.RamSectionId?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "not started"})");
        }

        ReadOrReplayRamChunk(cursor, state, first: false);
        if (type == SectionEnd)
        {
            state.RamEnded = true;
        }

        ReadFooter(cursor, state, sectionId, allowMissing: true);
    }

    private static void ReadCommand(SourceCursor cursor, ParseState state, long sectionStart)
    {
        const string S = "COMMAND section";
        ushort command = cursor.ReadBe16(S);
        ushort length = cursor.ReadBe16(S);
        switch (command)
        {
            case 7:
                throw new VmStateFormatException(sectionStart, S, "a PACKAGED command (postcopy); postcopy streams are not supported");
            case 11:
                // SWITCHOVER_START, QEMU 10.0 precopy (send-switchover-start): a marker with no effect on the state.
                break;
            default:
                state.Warnings.Add($"skipped COMMAND {command} at offset {sectionStart}");
                break;
        }

        cursor.Skip(length, S);
    }

    private static void ReadFooter(SourceCursor cursor, ParseState state, int sectionId, bool allowMissing)
    {
        if (cursor.PeekU8() != SectionFooter)
        {
            if (!allowMissing)
            {
                throw new VmStateFormatException(cursor.Position, "section footer", "expected 0x7e");
            }

            return;
        }

        long start = cursor.Position;
        cursor.ReadU8("section footer");
        int id = (int)cursor.ReadBe32("section footer");
        if (id != sectionId)
        {
            throw new VmStateFormatException(start, "section footer", $"footer names section {id} but the section is {sectionId}");
        }
    }

    /// <summary>
    /// Reads a RAM chunk, or with a cached index jumps over it (the chunk must start where the index says; its
    /// pages, the block list and the last block named come from the index), and records where it was.
    /// </summary>
    private static void ReadOrReplayRamChunk(SourceCursor cursor, ParseState state, bool first)
    {
        long start = cursor.Position;
        if (state.Replay is { } replay)
        {
            int n = state.RamChunks.Count;
            if (n >= replay.Chunks.Count || replay.Chunks[n].Start != start || replay.PageSize != state.PageSize)
            {
                throw new RamIndexMismatchException(start, $"RAM chunk {n} starts here with page size {state.PageSize}, not where the index has it");
            }

            if (n == 0)
            {
                if (replay.Blocks.Count > state.Limits.MaxRamBlocks)
                {
                    throw new RamIndexMismatchException(start, "more RAM blocks than the limits allow: parse afresh to report it");
                }

                ulong total = 0;
                foreach (RamBlock b in replay.Blocks)
                {
                    total += b.Length;
                    state.Blocks.Add(b);
                    state.BlocksByName[b.Name] = b;
                }

                if (total > state.Limits.MaxGuestRam)
                {
                    throw new RamIndexMismatchException(start, "more RAM than the limits allow: parse afresh to report it");
                }
            }

            RamChunkSpan span = replay.Chunks[n];
            cursor.Position = span.End;
            state.LastBlock = span.LastBlock < 0 ? null : replay.Blocks[span.LastBlock];
            state.LastRamEosOffset = span.End - 8;
            state.RamChunks.Add(span);
            return;
        }

        ReadRamChunk(cursor, state, first);
        state.RamChunks.Add(new RamChunkSpan(start, cursor.Position, state.LastBlock is null ? -1 : state.Blocks.IndexOf(state.LastBlock)));
    }

    private static void ReadRamChunk(SourceCursor cursor, ParseState state, bool first)
    {
        const string S = "ram record";
        ulong pageMask = (ulong)state.PageSize - 1;
        RamBlock? current = null;
        bool ignoreShared = state.Capabilities.Contains("x-ignore-shared");
        while (true)
        {
            if (current is not null)
            {
                ReadZeroRun(cursor, state, current, pageMask);
            }

            long recordStart = cursor.Position;
            ulong word = cursor.ReadBe64(S);
            ulong flags = word & pageMask;
            ulong offset = word & ~pageMask;

            if ((flags & RamMemSize) != 0)
            {
                ReadBlockList(cursor, state, offset, ignoreShared, recordStart);
                continue;
            }

            if ((flags & RamEos) != 0)
            {
                state.LastRamEosOffset = recordStart;
                return;
            }

            if ((flags & RamMultifdFlush) != 0)
            {
                // QEMU 8.1+: a sync point for multifd channels; carries no page.
                continue;
            }

            if ((flags & RamXbzrle) != 0)
            {
                throw new VmStateFormatException(recordStart, S, "an XBZRLE-encoded page (the xbzrle migration capability); turn xbzrle off when saving");
            }

            if ((flags & RamCompressPage) != 0)
            {
                throw new VmStateFormatException(recordStart, S, "a zlib-compressed page (the compress migration capability); turn compress off when saving");
            }

            if ((flags & RamHook) != 0)
            {
                throw new VmStateFormatException(recordStart, S, "an RDMA hook record, which cannot appear in a file");
            }

            if ((flags & RamFull) != 0)
            {
                throw new VmStateFormatException(recordStart, S, "the obsolete FULL flag (0x01)");
            }

            ulong kind = flags & ~RamContinue;
            if (kind != RamZero && kind != RamPage)
            {
                throw new VmStateFormatException(recordStart, S, $"unknown RAM flags 0x{flags:x}");
            }

            if ((flags & RamContinue) == 0)
            {
                string blockName = cursor.ReadStr8(S);
                current = state.FindBlock(blockName) ?? throw new VmStateFormatException(recordStart, S, $"page of RAM block \"{blockName}\", which the MEM_SIZE list did not name");
                state.LastBlock = current;
            }
            else
            {
                current = state.LastBlock ?? throw new VmStateFormatException(recordStart, S, "CONTINUE flag on the first page record (no previous block)");
            }

            if (offset >= current.Length)
            {
                throw new VmStateFormatException(recordStart, S, $"page offset 0x{offset:x} is past the end of block \"{current.Name}\" (0x{current.Length:x} bytes)");
            }

            long page = state.PageOf(offset);
            if (kind == RamZero)
            {
                SetFill(state, current, offset, cursor.ReadU8(S), recordStart);
            }
            else
            {
                long data = cursor.Position;
                if (state.Observer is null)
                {
                    cursor.Skip(state.PageSize, S);
                }
                else
                {
                    // Pages larger than the read buffer (target page bits up to 24) are read on their own.
                    state.Observer.Page(current.ListIndex, offset, state.PageSize <= SourceCursor.BufferSize ? cursor.TakeMemory(state.PageSize, S) : cursor.ReadBytes(state.PageSize, S));
                }

                current.SetData(page, data);
            }
        }
    }

    /// <summary>
    /// The fast path for runs of zero-page records of the current block (8-byte address word with ZERO | CONTINUE, then
    /// the fill byte), as much of a big guest with little touched memory is: decoded straight from the read buffer.
    /// Stops at anything else, which the general loop then reads (and reports, when it is wrong).
    /// </summary>
    private static void ReadZeroRun(SourceCursor cursor, ParseState state, RamBlock current, ulong pageMask)
    {
        ReadOnlySpan<byte> span = cursor.Buffered;
        long start = cursor.Position;
        ulong pageSize = pageMask + 1;
        const ulong ZeroContinue = RamZero | RamContinue;
        int used = 0;
        while (span.Length - used >= 9)
        {
            ulong word = BinaryPrimitives.ReadUInt64BigEndian(span[used..]);
            ulong offset = word & ~pageMask;
            if ((word & pageMask) != ZeroContinue || offset >= current.Length)
            {
                break;
            }

            if (span[used + 8] != 0)
            {
                SetFill(state, current, offset, span[used + 8], start + used);
                used += 9;
                continue;
            }

            // A run of zero records for consecutive pages (how QEMU sends untouched RAM): found with one compare
            // per record and stored as one run, not record by record.
            int runStart = used;
            ulong next = offset + pageSize;
            used += 9;
            int last = span.Length - 9; // the last position a whole record starts at
            ulong records = used <= last ? (ulong)(((last - used) / 9) + 1) : 0; // whole records left in the buffer
            ulong end = Math.Min(current.Length, next + (records * pageSize));
            ref byte b = ref MemoryMarshal.GetReference(span);
            while (next < end
                   && BinaryPrimitives.ReverseEndianness(Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref b, used))) == (next | ZeroContinue)
                   && Unsafe.Add(ref b, used + 8) == 0)
            {
                used += 9;
                next += pageSize;
            }

            long count = (used - runStart) / 9;
            long firstPage = state.PageOf(offset);
            if (state.Observer is null || current.AllUnset(firstPage, count))
            {
                // Zero pages over pages never sent change no content: the observer has nothing to hear.
                current.SetFillRun(firstPage, count, 0, start + runStart, 9);
            }
            else
            {
                for (long i = 0; i < count; i++)
                {
                    SetFill(state, current, offset + ((ulong)i * pageSize), 0, start + runStart + (i * 9));
                }
            }
        }

        cursor.Skip(used, "ram record");
    }

    /// <summary>Records a zero-page record, and tells the observer whether it replaces other content.</summary>
    private static void SetFill(ParseState state, RamBlock block, ulong offset, byte fill, long recordStart)
    {
        long page = state.PageOf(offset);
        if (state.Observer is null)
        {
            block.SetFill(page, fill, recordStart);
            return;
        }

        // The observer hears of content changes only: a zero record for a page that reads as zero already is none.
        long before = block.GetEntry(page);
        block.SetFill(page, fill, recordStart);
        bool replaces = before > 0 || (before < 0 && RamBlock.FillOf(before) != fill);
        if (fill != 0 || replaces)
        {
            state.Observer.Fill(block.ListIndex, offset, fill, replaces);
        }
    }

    private static void ReadBlockList(SourceCursor cursor, ParseState state, ulong total, bool ignoreShared, long recordStart)
    {
        const string S = "RAM block list (MEM_SIZE)";
        if (state.Blocks.Count > 0)
        {
            throw new VmStateFormatException(recordStart, S, "a second MEM_SIZE record");
        }

        if (total > state.Limits.MaxGuestRam)
        {
            throw new VmStateFormatException(recordStart, S, $"total RAM 0x{total:x} exceeds the limit 0x{state.Limits.MaxGuestRam:x}");
        }

        // The list has no count: blocks follow until their lengths add up to the total (QEMU 7.2 ram_load_precopy).
        ulong sum = 0;
        while (sum < total)
        {
            long entryStart = cursor.Position;
            string name = cursor.ReadStr8(S);
            ulong length = cursor.ReadBe64(S);
            if (length == 0 || length > total - sum)
            {
                throw new VmStateFormatException(entryStart, S, $"block \"{name}\" has length 0x{length:x}, but only 0x{total - sum:x} of the total 0x{total:x} is left");
            }

            ulong? gpa = null;
            if (ignoreShared)
            {
                gpa = cursor.ReadBe64(S);
            }

            if (state.Blocks.Count >= state.Limits.MaxRamBlocks)
            {
                throw new VmStateFormatException(entryStart, S, $"more than {state.Limits.MaxRamBlocks} RAM blocks");
            }

            if (state.FindBlock(name) is not null)
            {
                throw new VmStateFormatException(entryStart, S, $"block \"{name}\" is listed twice");
            }

            var block = new RamBlock(name, length, state.PageSize, gpa) { ListOffset = entryStart, ListIndex = state.Blocks.Count };
            state.Blocks.Add(block);
            state.BlocksByName[name] = block;
            sum += length;
        }

        state.Observer?.BlockList([.. state.Blocks.Select(b => (b.Name, b.Length))], state.PageSize);
    }

    private sealed class ParseState(IRandomAccessSource source, ReaderLimits limits, VmDescription? description, int pageSize, DeviceDecodeBudget budget)
    {
        private int _pageSize = pageSize;
        private int _pageShift = BitOperations.IsPow2(pageSize) ? BitOperations.Log2((uint)pageSize) : -1;

        public DeviceDecodeBudget Budget { get; } = budget;

        public IRandomAccessSource Source { get; } = source;

        public ReaderLimits Limits { get; } = limits;

        public VmDescription? Description { get; } = description;

        public int PageSize
        {
            get => _pageSize;
            set
            {
                _pageSize = value;
                _pageShift = BitOperations.IsPow2(value) ? BitOperations.Log2((uint)value) : -1;
            }
        }

        /// <summary>The page index of a block offset (a shift for the power-of-two sizes QEMU uses).</summary>
        public long PageOf(ulong offset) => _pageShift >= 0 ? (long)(offset >> _pageShift) : (long)(offset / (ulong)_pageSize);

        public string? MachineType { get; set; }

        public List<string> Capabilities { get; } = [];

        public List<RamBlock> Blocks { get; } = [];

        public Dictionary<string, RamBlock> BlocksByName { get; } = new(StringComparer.Ordinal);

        public List<DeviceState> Devices { get; } = [];

        public Dictionary<(string, int), int> SeenSections { get; } = new();

        public List<string> Warnings { get; } = [];

        public int? RamSectionId { get; set; }

        public bool RamEnded { get; set; }

        public RamBlock? LastBlock { get; set; }

        public long LastRamEosOffset { get; set; } = -1;

        public RamIndexRecord? Replay { get; init; }

        public List<RamChunkSpan> RamChunks { get; } = [];

        public IRamStreamObserver? Observer { get; init; }

        public RamBlock? FindBlock(string name) => BlocksByName.TryGetValue(name, out RamBlock? b) ? b : null;
    }
}
