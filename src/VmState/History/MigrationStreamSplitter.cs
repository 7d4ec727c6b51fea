using System.Buffers.Binary;
using System.Text;
using VmState.Formats;
using VmState.Formats.Migration;
using VmState.IO;
using VmState.Memory;

namespace VmState.History;

/// <summary>
/// Splits a migration stream read forward only (a pipe, a socket, a file read front to back) into its page records,
/// handed to an <see cref="IRamStreamObserver"/>, and every other byte in order (the "frame": header, configuration,
/// the RAM block list, device sections, EOF, VM description), which is itself a valid stream whose RAM chunks hold
/// no page records.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="Formats.Migration.MigrationStreamReader"/> needs random access: it locates the VM description at the end
/// before it decodes device sections, whose lengths only the description gives. A stream that arrives through a pipe
/// cannot be read that way, so this splitter knows only what delimits RAM: section headers, the RAM section's
/// records (QEMU 7.2 <c>migration/ram.c</c> <c>ram_load_precopy</c>) and COMMAND sections. The first device (FULL)
/// section ends the RAM part of a precopy stream (QEMU 7.2 <c>qemu_savevm_state_complete_precopy</c> writes the
/// iterable sections, then the non-iterable ones, EOF and the description; a background snapshot buffers the device
/// state and writes it after RAM, <c>bg_migration_iteration_finish</c>), so everything from there to the end is
/// copied to the frame as it is. The caller then parses the frame with <c>MigrationStreamReader</c>, which checks
/// the device sections against the description and finds any page record this splitter did not take out.
/// </para>
/// <para>Page records are reported as they come: every ZERO record through
/// <see cref="IRamStreamObserver.Fill"/> (with <c>replaces</c> true, since the splitter keeps no per-page state),
/// every PAGE record through <see cref="IRamStreamObserver.Page"/> with memory inside the splitter's read buffer,
/// valid until the next call.</para>
/// </remarks>
internal sealed class MigrationStreamSplitter
{
    // The stream's section types and RAM record flags: the reader's (one definition of the format).
    private const uint Magic = MigrationStreamReader.Magic;
    private const byte SectionEof = MigrationStreamReader.SectionEof;
    private const byte SectionStart = MigrationStreamReader.SectionStart;
    private const byte SectionPart = MigrationStreamReader.SectionPart;
    private const byte SectionEnd = MigrationStreamReader.SectionEnd;
    private const byte SectionFull = MigrationStreamReader.SectionFull;
    private const byte SectionSubsection = MigrationStreamReader.SectionSubsection;
    private const byte SectionConfiguration = MigrationStreamReader.SectionConfiguration;
    private const byte SectionCommand = MigrationStreamReader.SectionCommand;
    private const byte SectionFooter = MigrationStreamReader.SectionFooter;
    private const ulong RamZero = MigrationStreamReader.RamZero;
    private const ulong RamMemSize = MigrationStreamReader.RamMemSize;
    private const ulong RamPage = MigrationStreamReader.RamPage;
    private const ulong RamEos = MigrationStreamReader.RamEos;
    private const ulong RamContinue = MigrationStreamReader.RamContinue;
    private const ulong RamMultifdFlush = MigrationStreamReader.RamMultifdFlush;
    public const int MaxFrameBytes = 256 * 1024 * 1024;

    private readonly Stream _input;
    private readonly IRamStreamObserver _observer;
    private readonly ReaderLimits _limits;
    private readonly MemoryStream _frame = new();
    private readonly byte[] _buffer = new byte[1 << 18];
    private readonly List<(string Name, ulong Length)> _blocks = [];
    private readonly Dictionary<string, int> _blockIndex = new(StringComparer.Ordinal);
    private readonly CancellationToken _cancel;
    private int _start;
    private int _end;
    private long _consumed;
    private int _pageSize = 4096;
    private int? _ramSectionId;
    private bool _ignoreShared;
    private int _lastBlock = -1;

    private MigrationStreamSplitter(Stream input, IRamStreamObserver observer, ReaderLimits limits, CancellationToken cancel)
    {
        _input = input;
        _observer = observer;
        _limits = limits;
        _cancel = cancel;
    }

    /// <summary>The stream's bytes outside page records, in order.</summary>
    public byte[] Frame => _frame.ToArray();

    /// <summary>How many bytes of the input were read.</summary>
    public long StreamBytes => _consumed;

    /// <summary>The page size (target-page-bits of the configuration section, else 4096).</summary>
    public int PageSize => _pageSize;

    /// <summary>The RAM blocks of the MEM_SIZE list, in order.</summary>
    public IReadOnlyList<(string Name, ulong Length)> Blocks => _blocks;

    /// <summary>Reads <paramref name="input"/> to its end.</summary>
    /// <exception cref="VmStateFormatException">The stream is malformed (offset in the stream, what was expected).</exception>
    public static MigrationStreamSplitter Split(Stream input, IRamStreamObserver observer, ReaderLimits? limits = null, CancellationToken cancellationToken = default)
    {
        var s = new MigrationStreamSplitter(input, observer, limits ?? ReaderLimits.Default, cancellationToken);
        s.Run();
        return s;
    }

    private long Position => _consumed - (_end - _start);

    private void Run()
    {
        uint magic = ReadBe32("stream header", copy: true);
        if (magic != Magic)
        {
            throw new VmStateFormatException(0, "stream header", $"expected the magic \"QEVM\" (0x5145564d), found 0x{magic:x8}");
        }

        uint version = ReadBe32("stream header", copy: true);
        if (version != 3)
        {
            throw new VmStateFormatException(4, "stream header", $"expected version 3, found {version}");
        }

        int sections = 0;
        while (true)
        {
            if (++sections > _limits.MaxSections)
            {
                throw new VmStateFormatException(Position, "section", $"more than {_limits.MaxSections} sections");
            }

            long sectionStart = Position;
            byte type = ReadU8("section type", copy: true);
            switch (type)
            {
                case SectionEof:
                    CopyRest();
                    return;
                case SectionConfiguration:
                    ReadConfiguration();
                    break;
                case SectionStart:
                case SectionFull:
                    if (!ReadFullHeaderSection(type, sectionStart))
                    {
                        CopyRest();
                        return;
                    }

                    break;
                case SectionPart:
                case SectionEnd:
                    {
                        int id = (int)ReadBe32(type == SectionPart ? "PART section" : "END section", copy: true);
                        if (id != _ramSectionId)
                        {
                            throw new VmStateFormatException(sectionStart, "section", $"section id {id} does not belong to the ram section ({_ramSectionId?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "not started"})");
                        }

                        ReadRamChunk();
                        ReadFooter();
                        break;
                    }

                case SectionCommand:
                    {
                        ushort command = ReadBe16("COMMAND section", copy: true);
                        ushort length = ReadBe16("COMMAND section", copy: true);
                        if (command == 7)
                        {
                            throw new VmStateFormatException(sectionStart, "COMMAND section", "a PACKAGED command (postcopy); postcopy streams are not supported");
                        }

                        Copy(length, "COMMAND section");
                        break;
                    }

                default:
                    throw new VmStateFormatException(sectionStart, "section", $"unexpected section type 0x{type:x2} before the device sections");
            }
        }
    }

    private void ReadConfiguration()
    {
        const string S = "configuration section";
        long start = Position;
        uint length = ReadBe32(S, copy: true);
        if (length > 256)
        {
            throw new VmStateFormatException(start, S, $"machine type name of {length} bytes (expected at most 256)");
        }

        Copy((int)length, S);
        while (Peek(S) == SectionSubsection)
        {
            long subStart = Position;
            ReadU8(S, copy: true);
            string name = ReadStr8(S, copy: true);
            ReadBe32(S, copy: true);
            switch (name)
            {
                case "configuration/target-page-bits":
                    uint bits = ReadBe32(S, copy: true);
                    if (bits is < 10 or > 16)
                    {
                        throw new VmStateFormatException(subStart, S, $"target page bits {bits} (expected 10-16)");
                    }

                    _pageSize = 1 << (int)bits;
                    break;
                case "configuration/capabilities":
                    uint count = ReadBe32(S, copy: true);
                    if (count > 64)
                    {
                        throw new VmStateFormatException(subStart, S, $"{count} capabilities (expected at most 64)");
                    }

                    for (uint i = 0; i < count; i++)
                    {
                        string cap = ReadStr8(S, copy: true);
                        if (cap == "x-ignore-shared")
                        {
                            _ignoreShared = true;
                        }
                        else if (cap == "mapped-ram")
                        {
                            throw new VmStateFormatException(subStart, S, "the stream uses the mapped-ram capability, which is not supported");
                        }
                    }

                    break;
                case "configuration/uuid":
                    Copy(16, S);
                    break;
                default:
                    throw new VmStateFormatException(subStart, S, $"unknown subsection \"{name}\"");
            }
        }

        ReadFooter();
    }

    /// <summary>Reads a START/FULL section of ram; returns false at a device section (the rest is then copied).</summary>
    private bool ReadFullHeaderSection(byte type, long sectionStart)
    {
        string kind = type == SectionStart ? "START section" : "FULL section";

        // Peek the header first: a device section is copied with the rest of the stream, header and all.
        int id = (int)ReadBe32(kind, copy: true);
        string idStr = ReadStr8(kind, copy: true);
        ReadBe32(kind, copy: true);
        int version = (int)ReadBe32(kind, copy: true);
        if (idStr != "ram")
        {
            if (type == SectionStart)
            {
                throw new VmStateFormatException(sectionStart, kind, $"an iterable section \"{idStr}\" other than ram; only ram is supported");
            }

            return false;
        }

        if (_ramSectionId is not null)
        {
            throw new VmStateFormatException(sectionStart, kind, "a second ram section");
        }

        if (version != 4)
        {
            throw new VmStateFormatException(sectionStart, kind, $"ram section version {version} (expected 4)");
        }

        _ramSectionId = id;
        ReadRamChunk();
        ReadFooter();
        return true;
    }

    private void ReadFooter()
    {
        if (Peek("section footer") == SectionFooter)
        {
            ReadU8("section footer", copy: true);
            ReadBe32("section footer", copy: true);
        }
    }

    private void ReadRamChunk()
    {
        const string S = "ram record";
        ulong pageMask = (ulong)_pageSize - 1;
        Span<byte> w = stackalloc byte[8];
        while (true)
        {
            _cancel.ThrowIfCancellationRequested();
            long recordStart = Position;
            ulong word = ReadBe64(S, copy: false);
            ulong flags = word & pageMask;
            ulong offset = word & ~pageMask;
            if ((flags & (RamMemSize | RamEos | RamMultifdFlush)) != 0)
            {
                BinaryPrimitives.WriteUInt64BigEndian(w, word);
                Append(w);
                if ((flags & RamMemSize) != 0)
                {
                    ReadBlockList(offset, recordStart);
                    continue;
                }

                if ((flags & RamEos) != 0)
                {
                    return;
                }

                continue;
            }

            ulong kind = flags & ~RamContinue;
            if (kind != RamZero && kind != RamPage)
            {
                throw new VmStateFormatException(recordStart, S, $"RAM flags 0x{flags:x} (only ZERO and PAGE records are supported: no xbzrle, compress or RDMA)");
            }

            int block;
            if ((flags & RamContinue) == 0)
            {
                string name = ReadStr8(S, copy: false);
                if (!_blockIndex.TryGetValue(name, out block))
                {
                    throw new VmStateFormatException(recordStart, S, $"page of RAM block \"{name}\", which the MEM_SIZE list did not name");
                }

                _lastBlock = block;
            }
            else
            {
                block = _lastBlock >= 0 ? _lastBlock : throw new VmStateFormatException(recordStart, S, "CONTINUE flag on the first page record (no previous block)");
            }

            if (offset >= _blocks[block].Length)
            {
                throw new VmStateFormatException(recordStart, S, $"page offset 0x{offset:x} is past the end of block \"{_blocks[block].Name}\" (0x{_blocks[block].Length:x} bytes)");
            }

            if (kind == RamZero)
            {
                _observer.Fill(block, offset, ReadU8(S, copy: false), replaces: true);
            }
            else
            {
                Fill(_pageSize, S);
                _observer.Page(block, offset, _buffer.AsMemory(_start, _pageSize));
                _start += _pageSize;
            }
        }
    }

    private void ReadBlockList(ulong total, long recordStart)
    {
        const string S = "RAM block list (MEM_SIZE)";
        if (_blocks.Count > 0)
        {
            throw new VmStateFormatException(recordStart, S, "a second MEM_SIZE record");
        }

        if (total > _limits.MaxGuestRam)
        {
            throw new VmStateFormatException(recordStart, S, $"total RAM 0x{total:x} exceeds the limit 0x{_limits.MaxGuestRam:x}");
        }

        ulong sum = 0;
        while (sum < total)
        {
            long entryStart = Position;
            string name = ReadStr8(S, copy: true);
            ulong length = ReadBe64(S, copy: true);
            if (length == 0 || length > total - sum)
            {
                throw new VmStateFormatException(entryStart, S, $"block \"{name}\" has length 0x{length:x}, but only 0x{total - sum:x} of the total 0x{total:x} is left");
            }

            if (_ignoreShared)
            {
                ReadBe64(S, copy: true);
            }

            if (_blocks.Count >= _limits.MaxRamBlocks)
            {
                throw new VmStateFormatException(entryStart, S, $"more than {_limits.MaxRamBlocks} RAM blocks");
            }

            if (!_blockIndex.TryAdd(name, _blocks.Count))
            {
                throw new VmStateFormatException(entryStart, S, $"block \"{name}\" is listed twice");
            }

            _blocks.Add((name, length));
            sum += length;
        }

        _observer.BlockList(_blocks, _pageSize);
    }

    private void CopyRest()
    {
        while (true)
        {
            if (_end > _start)
            {
                Append(_buffer.AsSpan(_start, _end - _start));
                _start = _end;
            }

            if (!Refill(1))
            {
                return;
            }
        }
    }

    private void Append(ReadOnlySpan<byte> bytes)
    {
        if (_frame.Length + bytes.Length > MaxFrameBytes)
        {
            throw new VmStateFormatException(Position, "device state", $"more than {MaxFrameBytes} bytes outside page records");
        }

        _frame.Write(bytes);
    }

    private void Copy(int count, string structure)
    {
        while (count > 0)
        {
            Fill(1, structure);
            int n = Math.Min(count, _end - _start);
            Append(_buffer.AsSpan(_start, n));
            _start += n;
            count -= n;
        }
    }

    private byte Peek(string structure)
    {
        Fill(1, structure);
        return _buffer[_start];
    }

    private ReadOnlySpan<byte> Take(int count, string structure, bool copy)
    {
        Fill(count, structure);
        ReadOnlySpan<byte> s = _buffer.AsSpan(_start, count);
        _start += count;
        if (copy)
        {
            Append(s);
        }

        return s;
    }

    private byte ReadU8(string structure, bool copy) => Take(1, structure, copy)[0];

    private ushort ReadBe16(string structure, bool copy) => BinaryPrimitives.ReadUInt16BigEndian(Take(2, structure, copy));

    private uint ReadBe32(string structure, bool copy) => BinaryPrimitives.ReadUInt32BigEndian(Take(4, structure, copy));

    private ulong ReadBe64(string structure, bool copy) => BinaryPrimitives.ReadUInt64BigEndian(Take(8, structure, copy));

    private string ReadStr8(string structure, bool copy)
    {
        int length = ReadU8(structure, copy);
        return Encoding.UTF8.GetString(Take(length, structure, copy));
    }

    /// <summary>Makes <paramref name="count"/> bytes available at <c>_start</c>, or throws at the end of the input.</summary>
    private void Fill(int count, string structure)
    {
        if (!Refill(count))
        {
            throw new VmStateFormatException(Position, structure, $"the stream ends after {Position} bytes, {count} more expected");
        }
    }

    private bool Refill(int count)
    {
        if (_end - _start >= count)
        {
            return true;
        }

        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }

        while (_end < count)
        {
            int n = _input.Read(_buffer, _end, _buffer.Length - _end);
            if (n <= 0)
            {
                return false;
            }

            _end += n;
            _consumed += n;
        }

        return true;
    }
}
