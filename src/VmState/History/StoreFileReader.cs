using System.Buffers.Binary;
using System.Text;
using VmState.IO;

namespace VmState.History;

/// <summary>
/// Reads the fields of one store file held in memory, little-endian, each bounded before use; every error names the
/// file, the offset and the field (<see cref="VmStateFormatException"/>).
/// </summary>
internal ref struct StoreFileReader
{
    private readonly ReadOnlySpan<byte> _data;
    private readonly string _file;
    private string? _item;
    private int _itemIndex;

    public StoreFileReader(ReadOnlySpan<byte> data, string file)
    {
        _data = data;
        _file = file;
        Position = 0;
    }

    public int Position { get; private set; }

    public readonly int Remaining => _data.Length - Position;

    public readonly VmStateFormatException Error(string field, string problem) => Error(Position, field, problem);

    public readonly VmStateFormatException Error(long offset, string field, string problem) =>
        new(offset, _item is null ? $"{_file}: {field}" : $"{_file}: {_item} {_itemIndex} {field}", problem);

    /// <summary>
    /// Names the item the next fields belong to (<c>process 3</c>: errors then name <c>process 3 pid</c>), so a
    /// loop over many items builds no field name unless one is wrong; null ends the item.
    /// </summary>
    public void Item(string? kind, int index = 0)
    {
        _item = kind;
        _itemIndex = index;
    }

    public ReadOnlySpan<byte> Take(int count, string field)
    {
        if (count < 0 || count > Remaining)
        {
            throw Error(field, $"{count} bytes expected, {Remaining} left in the file");
        }

        ReadOnlySpan<byte> s = _data.Slice(Position, count);
        Position += count;
        return s;
    }

    public byte U8(string field) => Take(1, field)[0];

    public ushort U16(string field) => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, field));

    public uint U32(string field) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, field));

    public ulong U64(string field) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, field));

    public long I64(string field) => BinaryPrimitives.ReadInt64LittleEndian(Take(8, field));

    public UInt128 U128(string field) => BinaryPrimitives.ReadUInt128LittleEndian(Take(16, field));

    /// <summary>A u32 that must be at most <paramref name="max"/>.</summary>
    public int Count(string field, int max)
    {
        int at = Position;
        uint v = U32(field);
        if (v > (uint)max)
        {
            throw Error(at, field, $"{v} (at most {max} allowed)");
        }

        return (int)v;
    }

    /// <summary>A u64 that must be at most <paramref name="max"/>.</summary>
    public ulong Bounded(string field, ulong max)
    {
        int at = Position;
        ulong v = U64(field);
        if (v > max)
        {
            throw Error(at, field, $"{v} (at most {max} allowed)");
        }

        return v;
    }

    /// <summary>An unsigned LEB128 number of at most 10 bytes.</summary>
    public ulong VarUInt(string field)
    {
        int at = Position;
        ulong v = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            byte b = U8(field);
            v |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return v;
            }
        }

        throw Error(at, field, "a variable-length number of more than 10 bytes");
    }

    /// <summary>The format version (4 bytes), which must be 1.</summary>
    public void Version1()
    {
        int at = Position;
        uint version = U32("version");
        if (version != 1)
        {
            throw Error(at, "version", $"{version} (this reader knows version 1)");
        }
    }

    /// <summary>
    /// Reads the head every hashed store file starts with (the manifest, a capture file): the magic, the trailing
    /// XxHash128 over everything before it (checked unless <paramref name="checkHash"/> is false: the fuzz target
    /// reaches the fields), format version 1 and the page size (a power of two from 1 KiB to 64 KiB); returns the page size.
    /// </summary>
    public uint Head(ReadOnlySpan<byte> magic, string what, bool checkHash)
    {
        if (_data.Length < magic.Length + 16)
        {
            throw Error(0, "length", $"{_data.Length} bytes, too short for a {what}");
        }

        UInt128 stored = BinaryPrimitives.ReadUInt128LittleEndian(_data[^16..]);
        UInt128 actual = System.IO.Hashing.XxHash128.HashToUInt128(_data[..^16]);
        Magic(magic, what);
        if (checkHash && stored != actual)
        {
            throw Error(_data.Length - 16, "checksum", $"XxHash128 {actual:x32} of the {what} does not match the stored {stored:x32}: the file is damaged");
        }

        Version1();
        int at = Position;
        uint pageSize = U32("page size");
        if (pageSize is < 1024 or > 65536 || !uint.IsPow2(pageSize))
        {
            throw Error(at, "page size", $"{pageSize} (expected a power of two from 1024 to 65536)");
        }

        return pageSize;
    }

    /// <summary>A UTF-8 string with a u16 length of at most <paramref name="maxBytes"/>.</summary>
    public string Str(string field, int maxBytes)
    {
        int at = Position;
        int n = U16(field);
        if (n > maxBytes)
        {
            throw Error(at, field, $"a string of {n} bytes (at most {maxBytes} allowed)");
        }

        return Encoding.UTF8.GetString(Take(n, field));
    }

    public void Magic(ReadOnlySpan<byte> expected, string what)
    {
        ReadOnlySpan<byte> m = Take(expected.Length, "magic");
        if (!m.SequenceEqual(expected))
        {
            throw Error(0, "magic", $"not a {what} (expected \"{Encoding.ASCII.GetString(expected)}\", found {Convert.ToHexString(m)})");
        }
    }

    public readonly void End()
    {
        if (Remaining != 0)
        {
            throw Error("end", $"{Remaining} unexpected bytes after the last field");
        }
    }
}
