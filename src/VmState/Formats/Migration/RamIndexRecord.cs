using System.Text;
using VmState.IO;

namespace VmState.Formats.Migration;

/// <summary>
/// Everything the RAM part of a stream parse produces, in a form that can be stored and read back: the page size,
/// the RAM blocks with every page's index entry, and where each RAM chunk (the body of a START/PART/END/FULL "ram"
/// section, from its first record to just after its EOS record) starts and ends. Replaying it lets
/// <see cref="MigrationStreamReader"/> jump over each chunk instead of reading every page record, while still
/// walking (and checking) every other section; the result is the same <see cref="MigrationStream"/>.
/// </summary>
/// <remarks>
/// <para>The encoding (all integers unsigned LEB128 unless said otherwise) is compact because page records come in
/// runs: consecutive data pages of one block sit <c>page size + 8</c> bytes apart in the stream (an 8-byte address
/// word with CONTINUE, then the page), consecutive zero pages 9 bytes apart (the word and the fill byte). Each block's
/// entries are stored as runs: kind (0 never sent, 1 data, 2 fill), page count, and for data the first offset and
/// the stride, for fill the fill byte, the first record offset and the stride. A 16 GiB guest whose pages were sent
/// in order takes a few hundred bytes instead of 32 MiB.</para>
/// <para>Decoding is a parser of untrusted bytes: every count is bounded by <see cref="ReaderLimits"/> and by the
/// stream it describes (a data offset must leave room for a page inside the stream, a chunk must lie inside it) before
/// anything is allocated, and anything malformed is a <see cref="VmStateFormatException"/>.</para>
/// </remarks>
internal sealed class RamIndexRecord
{
    private const byte RunAbsent = 0;
    private const byte RunData = 1;
    private const byte RunFill = 2;
    private const int MaxNameBytes = 255;

    public RamIndexRecord(int pageSize, IReadOnlyList<RamBlock> blocks, IReadOnlyList<RamChunkSpan> chunks)
    {
        PageSize = pageSize;
        Blocks = blocks;
        Chunks = chunks;
    }

    /// <summary>Target page size the index was made with.</summary>
    public int PageSize { get; }

    /// <summary>The RAM blocks with their page index, in MEM_SIZE list order.</summary>
    public IReadOnlyList<RamBlock> Blocks { get; }

    /// <summary>The RAM chunks in stream order.</summary>
    public IReadOnlyList<RamChunkSpan> Chunks { get; }

    /// <summary>Encodes the record.</summary>
    public byte[] Encode()
    {
        var w = new Writer();
        w.Varint((ulong)PageSize);
        w.Varint((ulong)Chunks.Count);
        long previousEnd = 0;
        foreach (RamChunkSpan c in Chunks)
        {
            // Chunks are in stream order and do not overlap: store gaps and lengths, which are small.
            w.Varint((ulong)(c.Start - previousEnd));
            w.Varint((ulong)(c.End - c.Start));
            w.Varint((ulong)(c.LastBlock + 1));
            previousEnd = c.End;
        }

        w.Varint((ulong)Blocks.Count);
        foreach (RamBlock b in Blocks)
        {
            byte[] name = Encoding.UTF8.GetBytes(b.Name);
            w.Varint((ulong)name.Length);
            w.Bytes(name);
            w.Varint(b.Length);
            w.Varint(b.GuestPhysicalAddress is null ? 0UL : 1UL);
            w.Varint(b.GuestPhysicalAddress ?? 0);
            w.Varint((ulong)b.ListOffset);
            EncodeEntries(w, b);
        }

        return w.ToArray();
    }

    private static void EncodeEntries(Writer w, RamBlock b)
    {
        long page = 0;
        while (page < b.PageCount)
        {
            long first = b.GetEntry(page);
            byte kind = first == 0 ? RunAbsent : first > 0 ? RunData : RunFill;
            long count = 1;
            long stride = 0;
            if (kind == RunAbsent)
            {
                while (page + count < b.PageCount)
                {
                    if (b.WholeChunk(page + count) == 0)
                    {
                        count += 64; // a whole chunk never sent
                        continue;
                    }

                    if (b.GetEntry(page + count) != 0)
                    {
                        break;
                    }

                    count++;
                }

                w.Varint(RunAbsent);
                w.Varint((ulong)count);
            }
            else
            {
                long firstOffset = kind == RunData ? first : RamBlock.RecordOffsetOf(first);
                byte fill = kind == RunFill ? RamBlock.FillOf(first) : (byte)0;
                long previous = firstOffset;
                while (page + count < b.PageCount)
                {
                    // A whole chunk of consecutive zero records that continues the run (record stride 9): 64 pages at once.
                    if (kind == RunFill && fill == 0 && b.WholeChunk(page + count) is long chunkRecord and > 0
                        && chunkRecord - previous == 9 && (count == 1 || stride == 9))
                    {
                        stride = 9;
                        previous = chunkRecord + (63 * 9);
                        count += 64;
                        continue;
                    }

                    long e = b.GetEntry(page + count);
                    if (kind == RunData ? e <= 0 : e >= 0 || RamBlock.FillOf(e) != fill)
                    {
                        break;
                    }

                    long offset = kind == RunData ? e : RamBlock.RecordOffsetOf(e);
                    long delta = offset - previous;
                    if (delta <= 0 || (count > 1 && delta != stride))
                    {
                        break;
                    }

                    stride = delta;
                    previous = offset;
                    count++;
                }

                w.Varint(kind);
                w.Varint((ulong)count);
                if (kind == RunFill)
                {
                    w.Varint(fill);
                }

                w.Varint((ulong)firstOffset);
                w.Varint((ulong)stride);
            }

            page += count;
        }
    }

    /// <summary>
    /// Decodes a record made by <see cref="Encode"/> for a stream of <paramref name="streamLength"/> bytes.
    /// </summary>
    /// <exception cref="VmStateFormatException">The bytes are not a valid record for such a stream, or exceed <paramref name="limits"/>.</exception>
    public static RamIndexRecord Decode(ReadOnlySpan<byte> data, long streamLength, ReaderLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        var r = new Reader(data);
        ulong pageSizeValue = r.Varint("page size");
        if (pageSizeValue is < 1 << 10 or > 1 << 24 || (pageSizeValue & (pageSizeValue - 1)) != 0)
        {
            throw r.Error("page size", $"{pageSizeValue} is not a power of two from 1 KiB to 16 MiB");
        }

        int pageSize = (int)pageSizeValue;
        ulong chunkCount = r.Varint("chunk count");
        // Each chunk holds at least its 8-byte EOS record, and each is one section of the stream.
        if (chunkCount > (ulong)limits.MaxSections || chunkCount > (ulong)(streamLength / 8))
        {
            throw r.Error("chunk count", $"{chunkCount} chunks (at most {Math.Min(limits.MaxSections, streamLength / 8)} for this stream)");
        }

        var chunks = new List<RamChunkSpan>((int)Math.Min(chunkCount, 4096));
        long position = 0;
        ulong blockBound = (ulong)limits.MaxRamBlocks;
        for (ulong i = 0; i < chunkCount; i++)
        {
            ulong gap = r.Varint("chunk start");
            ulong length = r.Varint("chunk length");
            ulong lastBlock = r.Varint("chunk last block");
            if (gap > (ulong)(streamLength - position) || length < 8 || length > (ulong)(streamLength - position) - gap || lastBlock > blockBound)
            {
                throw r.Error("chunk", $"chunk {i} (gap {gap}, length {length}, last block {lastBlock}) does not lie inside the {streamLength}-byte stream after {position}");
            }

            long start = position + (long)gap;
            position = start + (long)length;
            chunks.Add(new RamChunkSpan(start, position, (int)lastBlock - 1));
        }

        ulong blockCount = r.Varint("block count");
        if (blockCount > blockBound)
        {
            throw r.Error("block count", $"{blockCount} RAM blocks (at most {limits.MaxRamBlocks})");
        }

        var blocks = new List<RamBlock>((int)blockCount);
        var names = new HashSet<string>(StringComparer.Ordinal);
        ulong total = 0;
        for (ulong i = 0; i < blockCount; i++)
        {
            ulong nameLength = r.Varint("block name length");
            if (nameLength is 0 or > MaxNameBytes)
            {
                throw r.Error("block name", $"a name of {nameLength} bytes (expected 1-{MaxNameBytes})");
            }

            string name = Encoding.UTF8.GetString(r.Bytes((int)nameLength, "block name"));
            ulong length = r.Varint("block length");
            ulong hasGpa = r.Varint("block address flag");
            ulong gpa = r.Varint("block address");
            ulong listOffset = r.Varint("block list offset");
            if (length == 0 || length > limits.MaxGuestRam - total || hasGpa > 1 || listOffset >= (ulong)streamLength || !names.Add(name))
            {
                throw r.Error("block", $"block \"{name}\" (length 0x{length:x}, list offset {listOffset}) is empty, repeated, outside the stream or over the RAM limit 0x{limits.MaxGuestRam:x}");
            }

            total += length;
            var block = new RamBlock(name, length, pageSize, hasGpa == 1 ? gpa : null) { ListOffset = (long)listOffset, ListIndex = blocks.Count };
            DecodeEntries(ref r, block, streamLength);
            blocks.Add(block);
        }

        if (!r.AtEnd)
        {
            throw r.Error("end", $"{r.Remaining} bytes after the last block");
        }

        foreach (RamChunkSpan c in chunks)
        {
            if (c.LastBlock >= blocks.Count)
            {
                throw r.Error("chunk", $"a chunk names block {c.LastBlock} of {blocks.Count}");
            }
        }

        return new RamIndexRecord(pageSize, blocks, chunks);
    }

    private static void DecodeEntries(ref Reader r, RamBlock block, long streamLength)
    {
        long page = 0;
        long pageSize = block.PageSize;
        while (page < block.PageCount)
        {
            ulong kind = r.Varint("run kind");
            ulong countValue = r.Varint("run length");
            if (countValue == 0 || countValue > (ulong)(block.PageCount - page))
            {
                throw r.Error("run", $"a run of {countValue} pages at page {page} of block \"{block.Name}\" ({block.PageCount} pages)");
            }

            long count = (long)countValue;
            if (kind == RunAbsent)
            {
                page += count;
                continue;
            }

            if (kind is not (RunData or RunFill))
            {
                throw r.Error("run", $"unknown run kind {kind} in block \"{block.Name}\"");
            }

            ulong fill = kind == RunFill ? r.Varint("fill byte") : 0;
            ulong first = r.Varint("run offset");
            ulong stride = r.Varint("run stride");
            // Every entry must point inside the stream: data leaves room for a page, a fill record for its word and
            // fill byte; an entry of 0 would mean "never sent", so offsets start at 1. The stride is at least the
            // size of one record, as records of one stream cannot overlap.
            long room = kind == RunData ? pageSize : 9;
            ulong minStride = kind == RunData ? (ulong)pageSize : 9;
            if (fill > 0xFF || first == 0 || first > (ulong)(streamLength - room)
                || (count > 1 && (stride < minStride || stride > (ulong)(streamLength - room) / (ulong)(count - 1)
                    || first > (ulong)(streamLength - room) - stride * (ulong)(count - 1))))
            {
                throw r.Error("run", $"a run of {count} pages at page {page} of block \"{block.Name}\" (offset {first}, stride {stride}) does not lie inside the {streamLength}-byte stream");
            }

            if (kind == RunData)
            {
                for (long i = 0; i < count; i++)
                {
                    block.SetData(page + i, (long)first + (i * (long)stride));
                }
            }
            else
            {
                block.SetFillRun(page, count, (byte)fill, (long)first, (long)stride);
            }

            page += count;
        }
    }

    private sealed class Writer
    {
        private byte[] _buffer = new byte[256];
        private int _length;

        public void Varint(ulong value)
        {
            Ensure(10);
            while (value >= 0x80)
            {
                _buffer[_length++] = (byte)(value | 0x80);
                value >>= 7;
            }

            _buffer[_length++] = (byte)value;
        }

        public void Bytes(ReadOnlySpan<byte> bytes)
        {
            Ensure(bytes.Length);
            bytes.CopyTo(_buffer.AsSpan(_length));
            _length += bytes.Length;
        }

        public byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();

        private void Ensure(int more)
        {
            if (_length + more > _buffer.Length)
            {
                Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + more));
            }
        }
    }

    private ref struct Reader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private int _position;

        public readonly bool AtEnd => _position == _data.Length;

        public readonly int Remaining => _data.Length - _position;

        public ulong Varint(string what)
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_position >= _data.Length)
                {
                    throw Error(what, "truncated");
                }

                byte b = _data[_position++];
                if (shift == 63 && b > 1)
                {
                    break;
                }

                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }

            throw Error(what, "a number longer than 64 bits");
        }

        public ReadOnlySpan<byte> Bytes(int count, string what)
        {
            if (count > _data.Length - _position)
            {
                throw Error(what, $"truncated: {count} bytes expected, {_data.Length - _position} left");
            }

            ReadOnlySpan<byte> s = _data.Slice(_position, count);
            _position += count;
            return s;
        }

        public readonly VmStateFormatException Error(string what, string problem) =>
            new(_position, $"RAM index cache entry ({what})", problem);
    }
}

/// <summary>One RAM chunk of a stream: from its first record to just after its EOS record, and the block last named in it (-1 none).</summary>
internal readonly record struct RamChunkSpan(long Start, long End, int LastBlock);

/// <summary>A cached RAM index does not fit the stream being parsed (it was made for other bytes): parse afresh.</summary>
internal sealed class RamIndexMismatchException(long offset, string problem) : Exception($"RAM index cache does not match the stream at offset {offset}: {problem}");
