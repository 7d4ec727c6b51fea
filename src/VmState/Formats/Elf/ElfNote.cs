using System.Buffers.Binary;
using System.Text;

namespace VmState.Formats.Elf;

/// <summary>An ELF note: owner name, type and descriptor bytes (4-byte aligned, as in ELF64 cores).</summary>
public sealed record ElfNote(string Name, uint Type, byte[] Descriptor)
{
    /// <summary>Note type of NT_PRSTATUS.</summary>
    public const uint NtPrstatus = 1;

    /// <summary>Bytes this note occupies when encoded.</summary>
    public int EncodedSize => 12 + Align4(Encoding.ASCII.GetByteCount(Name) + 1) + Align4(Descriptor.Length);

    /// <summary>Encodes the note at the start of <paramref name="destination"/>; returns the bytes written.</summary>
    public int Encode(Span<byte> destination)
    {
        int nameLength = Encoding.ASCII.GetByteCount(Name) + 1;
        BinaryPrimitives.WriteUInt32LittleEndian(destination, (uint)nameLength);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], (uint)Descriptor.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], Type);
        int pos = 12;
        destination.Slice(pos, Align4(nameLength)).Clear();
        Encoding.ASCII.GetBytes(Name, destination[pos..]);
        pos += Align4(nameLength);
        destination.Slice(pos, Align4(Descriptor.Length)).Clear();
        Descriptor.CopyTo(destination[pos..]);
        return pos + Align4(Descriptor.Length);
    }

    /// <summary>Decodes all notes in a PT_NOTE segment; <paramref name="fileOffset"/> is for messages.</summary>
    public static List<ElfNote> DecodeAll(ReadOnlySpan<byte> data, long fileOffset) => DecodeAll(data, fileOffset, int.MaxValue);

    /// <summary>
    /// Decodes the notes in a PT_NOTE segment, at most <paramref name="maxNotes"/> (an empty note is only 12 bytes,
    /// so a large segment of zeroes would otherwise be one object per 12 bytes).
    /// </summary>
    public static List<ElfNote> DecodeAll(ReadOnlySpan<byte> data, long fileOffset, int maxNotes)
    {
        var notes = new List<ElfNote>();
        int pos = 0;
        while (pos + 12 <= data.Length)
        {
            if (notes.Count >= maxNotes)
            {
                throw new IO.VmStateFormatException(fileOffset + pos, "ELF note", $"more than {maxNotes} notes");
            }

            uint nameSize = BinaryPrimitives.ReadUInt32LittleEndian(data[pos..]);
            uint descSize = BinaryPrimitives.ReadUInt32LittleEndian(data[(pos + 4)..]);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(data[(pos + 8)..]);
            long nameEnd = pos + 12L + Align4((long)nameSize);
            long descEnd = nameEnd + Align4((long)descSize);
            if (nameSize > 4096 || descEnd > data.Length)
            {
                throw new IO.VmStateFormatException(fileOffset + pos, "ELF note", $"name size {nameSize} / descriptor size {descSize} run past the end of the PT_NOTE segment ({data.Length} bytes)");
            }

            ReadOnlySpan<byte> name = data.Slice(pos + 12, (int)nameSize);
            int nul = name.IndexOf((byte)0);
            string n = Encoding.ASCII.GetString(nul >= 0 ? name[..nul] : name);
            notes.Add(new ElfNote(n, type, data.Slice((int)nameEnd, (int)descSize).ToArray()));
            pos = (int)descEnd;
        }

        return notes;
    }

    private static int Align4(int v) => (v + 3) & ~3;

    private static long Align4(long v) => (v + 3) & ~3L;
}
