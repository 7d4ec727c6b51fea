using System.Buffers.Binary;
using VmState.IO;

namespace VmState.History;

/// <summary>
/// The combined index file (<c>indexes</c>): every capture's index file (<see cref="CaptureIndexFile"/>) appended, in
/// the order they were written, so a reader takes all of them with one read instead of opening a file per capture
/// (<c>history find</c>, <c>history list</c>). Derived data beside the per-capture files, which stay the reference:
/// a capture without a record here is read from its own file (a store written before this file existed, or a writer
/// killed between the two writes; the next writer to open the store appends what is missing).
/// </summary>
/// <remarks>
/// Layout (little-endian): "VMSHIDXL", u32 version 1, u32 reserved 0; then records of u32 capture number (≥ 1),
/// u32 length and that many bytes: a whole index file, its own XxHash128 at its end. A later record of the same
/// capture replaces an earlier one. A record cut off by the end of the file (an append interrupted by a crash) is
/// not part of the file: readers ignore it and the next writer truncates it. Only appended to.
/// </remarks>
internal static class CaptureIndexLog
{
    public const string FileName = "indexes";
    public const int HeaderSize = 16;
    public const int RecordHeaderSize = 8;
    private static ReadOnlySpan<byte> Magic => "VMSHIDXL"u8;

    public static byte[] Header()
    {
        byte[] h = new byte[HeaderSize];
        Magic.CopyTo(h);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), 1);
        return h;
    }

    /// <summary>The record for capture <paramref name="number"/> holding index file <paramref name="indexFile"/>.</summary>
    public static byte[] Record(int number, ReadOnlySpan<byte> indexFile)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(number, 1);
        byte[] r = new byte[RecordHeaderSize + indexFile.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(r, (uint)number);
        BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(4), (uint)indexFile.Length);
        indexFile.CopyTo(r.AsSpan(RecordHeaderSize));
        return r;
    }

    /// <summary>
    /// Walks the records of <paramref name="data"/> (a whole file): per capture number the offset and length of its
    /// latest index file; <paramref name="validLength"/> is where the last whole record ends (a cut-off record after
    /// it is left out). The index files themselves are not parsed here (<see cref="CaptureIndexFile.Parse"/> on use).
    /// </summary>
    /// <exception cref="VmStateFormatException">The header is not one of this file, or a record is malformed.</exception>
    public static Dictionary<int, (int Offset, int Length)> Scan(ReadOnlySpan<byte> data, string file, out int validLength)
    {
        var r = new StoreFileReader(data, file);
        if (data.Length < HeaderSize)
        {
            throw r.Error(0, "length", $"{data.Length} bytes, too short for the {HeaderSize}-byte header of a combined capture index");
        }

        r.Magic(Magic, "history store combined capture index");
        r.Version1();
        int at = r.Position;
        uint reserved = r.U32("reserved");
        if (reserved != 0)
        {
            throw r.Error(at, "reserved", $"0x{reserved:x} (expected 0)");
        }

        var records = new Dictionary<int, (int, int)>();
        validLength = HeaderSize;
        while (r.Remaining >= RecordHeaderSize)
        {
            at = r.Position;
            int number = r.Count("record capture number", HistoryManifest.MaxCaptures * 16);
            if (number == 0)
            {
                throw r.Error(at, "record capture number", "0 (captures are numbered from 1)");
            }

            int length = r.Count($"capture {number} record length", CaptureIndexFile.MaxBytes);
            if (length > r.Remaining)
            {
                // Cut off: an append that did not finish.
                break;
            }

            records[number] = (r.Position, length);
            r.Take(length, $"capture {number} index");
            validLength = r.Position;
        }

        return records;
    }
}
