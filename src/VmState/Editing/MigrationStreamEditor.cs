using System.Buffers.Binary;
using System.Buffers;
using System.Text;
using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Editing;

/// <summary>
/// Collects edits to a parsed migration stream — guest RAM bytes and device fields — and writes a new stream that
/// QEMU resumes from. Everything not edited is copied byte for byte: data pages and fields are patched in place, a
/// zero page that gets data becomes a data record where it stands, and a page the stream never sent is added at the
/// end of the last RAM chunk (where no CONTINUE record can follow it). The original is never modified.
/// </summary>
public sealed class MigrationStreamEditor
{
    private const ulong RamZero = 0x02;
    private const ulong RamPage = 0x08;
    private const ulong RamContinue = 0x20;
    private readonly MigrationStream _stream;
    private readonly MigrationRamMemory _memory;
    private readonly Dictionary<(RamBlock Block, long Page), byte[]> _pages = new();
    private readonly SortedDictionary<long, byte[]> _fieldPatches = new();

    /// <summary>Edits the stream behind <paramref name="machine"/> (a state read from a migration stream or qcow2 snapshot).</summary>
    public MigrationStreamEditor(MachineState machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        _stream = machine.Origin is MigrationStreamOrigin origin
            ? origin.Stream
            : throw new ArgumentException($"{machine.SourcePath} is a {machine.Origin.Description}, not a migration stream or qcow2 snapshot; only those can be edited");
        _memory = (MigrationRamMemory)machine.Memory;
    }

    /// <summary>Pages changed so far.</summary>
    public int EditedPages => _pages.Count;

    /// <summary>Device field patches so far.</summary>
    public int EditedFields => _fieldPatches.Count;

    /// <summary>Writes <paramref name="data"/> at guest-physical <paramref name="address"/>; every byte must be RAM.</summary>
    /// <exception cref="InvalidEditException">Some byte is not RAM (nothing is written then).</exception>
    public void WritePhysical(ulong address, ReadOnlySpan<byte> data)
    {
        // address + length must not pass 2^64: the loop below would wrap to guest-physical 0 and write there.
        if (data.Length > 0 && (ulong)(data.Length - 1) > ulong.MaxValue - address)
        {
            throw new InvalidEditException(address, "guest-physical", $"[0x{address:x}, +0x{data.Length:x}) runs past the top of the 64-bit address space");
        }

        // Every byte is checked before the first is written, so a write that runs off the end of RAM leaves the
        // overlay as it was instead of half-applied.
        var pieces = new List<(RamBlock Block, ulong Offset, int Start, int Length)>();
        int done = 0;
        while (done < data.Length)
        {
            ulong a = address + (ulong)done;
            if (!_memory.TryLocate(a, out RamBlock block, out ulong offset, out ulong contiguous))
            {
                throw new InvalidEditException(a, "guest-physical", $"guest-physical 0x{a:x} is not RAM in this snapshot (RAM: {string.Join(", ", _memory.Ranges)})");
            }

            int n = (int)Math.Min((ulong)(data.Length - done), contiguous);
            pieces.Add((block, offset, done, n));
            done += n;
        }

        foreach ((RamBlock block, ulong offset, int start, int length) in pieces)
        {
            WriteBlock(block, offset, data.Slice(start, length));
        }
    }

    /// <summary>Writes <paramref name="data"/> into RAM block <paramref name="block"/> at <paramref name="offset"/>.</summary>
    public void WriteBlock(RamBlock block, ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset > block.Length || (ulong)data.Length > block.Length - offset)
        {
            throw new InvalidEditException(offset, $"RAM block {block.Name}", $"[0x{offset:x}, +0x{data.Length:x}) is outside RAM block {block.Name} (0x{block.Length:x} bytes)");
        }

        int pageSize = block.PageSize;
        int done = 0;
        while (done < data.Length)
        {
            ulong o = offset + (ulong)done;
            long page = (long)(o / (ulong)pageSize);
            int inPage = (int)(o % (ulong)pageSize);
            int n = Math.Min(pageSize - inPage, data.Length - done);
            if (!_pages.TryGetValue((block, page), out byte[]? buffer))
            {
                buffer = new byte[pageSize];
                _memory.ReadBlock(block, (ulong)page * (ulong)pageSize, buffer);
                _pages[(block, page)] = buffer;
            }

            data.Slice(done, n).CopyTo(buffer.AsSpan(inPage));
            done += n;
        }
    }

    /// <summary>Reads guest-physical memory as edited so far.</summary>
    public void ReadPhysical(ulong address, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            ulong a = address + (ulong)done;
            if (!_memory.TryLocate(a, out RamBlock block, out ulong offset, out ulong contiguous))
            {
                throw new ArgumentOutOfRangeException(nameof(address), $"guest-physical 0x{a:x} is not RAM in this snapshot");
            }

            long page = (long)(offset / (ulong)block.PageSize);
            int inPage = (int)(offset % (ulong)block.PageSize);
            int n = (int)Math.Min(Math.Min((ulong)(destination.Length - done), contiguous), (ulong)(block.PageSize - inPage));
            if (_pages.TryGetValue((block, page), out byte[]? edited))
            {
                edited.AsSpan(inPage, n).CopyTo(destination.Slice(done, n));
            }
            else
            {
                _memory.ReadBlock(block, offset, destination.Slice(done, n));
            }

            done += n;
        }
    }

    /// <summary>Sets an integer or bool field (checked against its size and signedness).</summary>
    public void SetField(DeviceField field, ulong value, bool negative = false)
    {
        if (field.Kind is not (FieldKind.Integer or FieldKind.Bool))
        {
            throw new InvalidEditException(field.Name, $"field {field.Name} is {field.Type} ({field.Kind}), not an integer; set its bytes instead");
        }

        int bits = field.Size * 8;
        if (field.Kind == FieldKind.Bool && value > 1)
        {
            throw new InvalidEditException(field.Name, $"field {field.Name} is a bool: 0 or 1");
        }

        if (negative && !field.Signed)
        {
            throw new InvalidEditException(field.Name, $"field {field.Name} ({field.Type}) is unsigned");
        }

        if (bits < 64)
        {
            bool fits = negative ? (long)value >= -(1L << (bits - 1)) : value <= (field.Signed ? (1UL << (bits - 1)) - 1 : (1UL << bits) - 1);
            if (!fits)
            {
                throw new InvalidEditException(field.Name, $"value {(negative ? (long)value : (decimal)value)} does not fit field {field.Name} ({field.Type}, {field.Size} bytes)");
            }
        }

        byte[] bytes = new byte[field.Size];
        for (int i = 0; i < field.Size; i++)
        {
            bytes[field.Size - 1 - i] = (byte)(value >> (8 * i));
        }

        _fieldPatches[field.Offset] = bytes;
    }

    /// <summary>Replaces bytes of a field (buffers, PCI config, opaque device state) starting <paramref name="at"/> bytes into it.</summary>
    public void SetFieldBytes(DeviceField field, int at, ReadOnlySpan<byte> bytes)
    {
        if (field.Kind is FieldKind.Struct or FieldKind.Array)
        {
            throw new InvalidEditException(field.Name, $"field {field.Name} is a {field.Kind}; set its members or elements instead");
        }

        if (at < 0 || at + bytes.Length > field.Size)
        {
            throw new InvalidEditException(field.Name, $"bytes [{at}, {at + bytes.Length}) do not fit in field {field.Name} ({field.Size} bytes)");
        }

        byte[] current = CurrentBytes(field);
        bytes.CopyTo(current.AsSpan(at));
        _fieldPatches[field.Offset] = current;
    }

    /// <summary>The field's bytes as edited so far.</summary>
    public byte[] CurrentBytes(DeviceField field)
    {
        if (_fieldPatches.TryGetValue(field.Offset, out byte[]? patched) && patched.Length == field.Size)
        {
            return (byte[])patched.Clone();
        }

        byte[] b = new byte[field.Size];
        if (_stream.Source.Read(field.Offset, b) != b.Length)
        {
            throw new VmStateFormatException(field.Offset, $"field {field.Name}", "the stream ends inside the field");
        }

        return b;
    }

    /// <summary>
    /// Writes the edited stream to <paramref name="path"/> (temporary name, then rename), checked against the input
    /// by file identity and no wider in permission than it. Returns bytes written.
    /// </summary>
    public long Save(string path, CancellationToken cancellationToken = default) =>
        Save(path, OutputRules.ForInputs([_stream.Source.Name]), cancellationToken);

    /// <summary>Writes the edited stream to <paramref name="path"/> under <paramref name="rules"/>. Returns bytes written.</summary>
    public long Save(string path, OutputRules rules, CancellationToken cancellationToken = default)
    {
        using OutputFile file = OutputFile.Create(path, rules);
        long written;
        using (Stream output = file.OpenStream())
        {
            written = WriteTo(output, cancellationToken);
        }

        file.Commit();
        return written;
    }

    /// <summary>Writes the edited stream into <paramref name="output"/>: the input copied with the splices applied.</summary>
    public long WriteTo(Stream output, CancellationToken cancellationToken = default)
    {
        List<Splice> splices = BuildSplices();
        long written = 0;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(4 << 20);
        try
        {
            long position = 0;
            foreach (Splice s in splices)
            {
                written += Copy(output, buffer, position, s.Offset, cancellationToken);
                output.Write(s.Replacement);
                written += s.Replacement.Length;
                position = s.Offset + s.RemoveLength;
            }

            written += Copy(output, buffer, position, _stream.Source.Length, cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return written;
    }

    private long Copy(Stream output, byte[] buffer, long from, long to, CancellationToken ct)
    {
        long copied = 0;
        while (from < to)
        {
            ct.ThrowIfCancellationRequested();
            int n = (int)Math.Min(buffer.Length, to - from);
            int got = _stream.Source.Read(from, buffer.AsSpan(0, n));
            if (got != n)
            {
                throw new VmStateFormatException(from, "migration stream", "the input ended while copying");
            }

            output.Write(buffer, 0, n);
            from += n;
            copied += n;
        }

        return copied;
    }

    private List<Splice> BuildSplices()
    {
        var splices = new List<Splice>();
        var appended = new List<(RamBlock, long, byte[])>();
        foreach (((RamBlock block, long page), byte[] data) in _pages)
        {
            long entry = block.GetEntry(page);
            if (entry > 0)
            {
                splices.Add(new Splice(entry, data.Length, data));
            }
            else if (entry < 0)
            {
                // A zero page: turn its record into a data record in place (flags ZERO -> PAGE, fill byte -> page).
                long record = RamBlock.RecordOffsetOf(entry);
                byte[] head = new byte[8 + 256];
                int n = _stream.Source.Read(record, head);
                ulong word = BinaryPrimitives.ReadUInt64BigEndian(head);
                if (n < 9 || (word & RamZero) == 0)
                {
                    throw new VmStateFormatException(record, "ram record", "expected the zero-page record the index points at");
                }

                int fillAt = 8 + ((word & RamContinue) != 0 ? 0 : 1 + head[8]);
                byte[] newWord = new byte[8];
                BinaryPrimitives.WriteUInt64BigEndian(newWord, (word & ~RamZero) | RamPage);
                splices.Add(new Splice(record, 8, newWord));
                splices.Add(new Splice(record + fillAt, 1, data));
            }
            else
            {
                appended.Add((block, page, data));
            }
        }

        if (appended.Count > 0)
        {
            if (_stream.LastRamEosOffset < 0)
            {
                throw new InvalidOperationException("the stream has no RAM chunk to add pages to");
            }

            // Pages the stream never sent: full records (with the block name, no CONTINUE) before the last EOS.
            using var ms = new MemoryStream();
            Span<byte> word = stackalloc byte[8];
            foreach ((RamBlock block, long page, byte[] data) in appended.OrderBy(x => x.Item1.Name, StringComparer.Ordinal).ThenBy(x => x.Item2))
            {
                BinaryPrimitives.WriteUInt64BigEndian(word, ((ulong)page * (ulong)block.PageSize) | RamPage);
                ms.Write(word);
                byte[] name = Encoding.UTF8.GetBytes(block.Name);
                ms.WriteByte((byte)name.Length);
                ms.Write(name);
                ms.Write(data);
            }

            splices.Add(new Splice(_stream.LastRamEosOffset, 0, ms.ToArray()));
        }

        foreach ((long offset, byte[] bytes) in _fieldPatches)
        {
            splices.Add(new Splice(offset, bytes.Length, bytes));
        }

        splices.Sort((a, b) => a.Offset != b.Offset ? a.Offset.CompareTo(b.Offset) : a.RemoveLength.CompareTo(b.RemoveLength));
        for (int i = 1; i < splices.Count; i++)
        {
            if (splices[i].Offset < splices[i - 1].Offset + splices[i - 1].RemoveLength)
            {
                throw new InvalidOperationException($"overlapping edits at stream offset {splices[i].Offset}");
            }
        }

        return splices;
    }

    private sealed record Splice(long Offset, int RemoveLength, byte[] Replacement);
}
