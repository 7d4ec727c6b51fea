using System.Buffers.Binary;

namespace VmState.Formats.Elf;

/// <summary>The ELF64 header and program headers of the x86-64 cores vmstate writes (machine cores and process cores).</summary>
internal static class ElfHeaders
{
    /// <summary>
    /// An ELF64 little-endian ET_CORE header for x86-64 at the start of <paramref name="h"/>. With
    /// <paramref name="phnum"/> ≥ PN_XNUM the count goes in sh_info of section header 0 at <paramref name="shoff"/>.
    /// </summary>
    public static void WriteCoreHeader(Span<byte> h, long phoff, long shoff, long phnum)
    {
        bool extended = phnum >= ElfConstants.PnXnum;
        "\x7f"u8.CopyTo(h);
        "ELF"u8.CopyTo(h[1..]);
        h[4] = 2; // ELFCLASS64
        h[5] = 1; // ELFDATA2LSB
        h[6] = 1; // EV_CURRENT
        BinaryPrimitives.WriteUInt16LittleEndian(h[16..], ElfConstants.EtCore);
        BinaryPrimitives.WriteUInt16LittleEndian(h[18..], ElfConstants.EmX86_64);
        BinaryPrimitives.WriteUInt32LittleEndian(h[20..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(h[32..], (ulong)phoff);
        BinaryPrimitives.WriteUInt64LittleEndian(h[40..], (ulong)shoff);
        BinaryPrimitives.WriteUInt16LittleEndian(h[52..], ElfConstants.Elf64HeaderSize);
        BinaryPrimitives.WriteUInt16LittleEndian(h[54..], ElfConstants.Elf64PhdrSize);
        BinaryPrimitives.WriteUInt16LittleEndian(h[56..], extended ? ElfConstants.PnXnum : (ushort)phnum);
        BinaryPrimitives.WriteUInt16LittleEndian(h[58..], ElfConstants.Elf64ShdrSize);
        BinaryPrimitives.WriteUInt16LittleEndian(h[60..], (ushort)(extended ? 1 : 0));
        if (extended)
        {
            // PN_XNUM: the real program header count is in sh_info of section header 0 (System V ABI).
            BinaryPrimitives.WriteUInt32LittleEndian(h[(int)(shoff + 44)..], (uint)phnum);
        }
    }

    /// <summary>One ELF64 program header at the start of <paramref name="p"/>.</summary>
    public static void WritePhdr(Span<byte> p, uint type, uint flags, ulong offset, ulong vaddr, ulong paddr, ulong filesz, ulong memsz, ulong align)
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
