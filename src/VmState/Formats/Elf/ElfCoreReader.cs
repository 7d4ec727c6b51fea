using System.Buffers.Binary;
using VmState.Arch.X86;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Formats.Elf;

/// <summary>
/// Reads ELF cores of x86 guests (QEMU's dump-guest-memory, ELF64 or ELF32, and ours) into a
/// <see cref="MachineState"/>: memory by p_paddr, vCPUs from the "QEMU" notes (or NT_PRSTATUS), VMCOREINFO.
/// </summary>
public static class ElfCoreReader
{
    /// <summary>Most program headers accepted.</summary>
    public const int MaxProgramHeaders = 1 << 22;

    /// <summary>Largest PT_NOTE segment accepted.</summary>
    public const int MaxNotesSize = 64 << 20;

    /// <summary>True when the source starts with the ELF magic.</summary>
    public static bool IsElf(IRandomAccessSource source)
    {
        Span<byte> m = stackalloc byte[4];
        return source.Read(0, m) == 4 && m[0] == 0x7f && m[1] == (byte)'E' && m[2] == (byte)'L' && m[3] == (byte)'F';
    }

    /// <summary>Parses the core; the returned state owns <paramref name="source"/>.</summary>
    public static MachineState Read(IRandomAccessSource source, string sourcePath)
    {
        const string S = "ELF header";
        byte[] ident = new byte[64];
        if (source.Read(0, ident) < 52)
        {
            throw new VmStateFormatException(0, S, $"the file has {source.Length} bytes, fewer than an ELF header");
        }

        if (ident[0] != 0x7f || ident[1] != (byte)'E' || ident[2] != (byte)'L' || ident[3] != (byte)'F')
        {
            throw new VmStateFormatException(0, S, "expected the magic 7f 45 4c 46");
        }

        bool is64 = ident[4] switch
        {
            2 => true,
            1 => false,
            _ => throw new VmStateFormatException(4, S, $"EI_CLASS {ident[4]} (expected 1 or 2)"),
        };
        if (ident[5] != 1)
        {
            throw new VmStateFormatException(5, S, $"EI_DATA {ident[5]} (only little-endian cores are supported)");
        }

        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(ident.AsSpan(16));
        if (type != ElfConstants.EtCore)
        {
            throw new VmStateFormatException(16, S, $"e_type {type} (expected 4, a core file)");
        }

        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(ident.AsSpan(18));
        if (machine != ElfConstants.EmX86_64 && machine != ElfConstants.Em386)
        {
            throw new VmStateFormatException(18, S, $"e_machine {machine} (expected 62 x86-64 or 3 i386)");
        }

        long phoff = is64 ? (long)BinaryPrimitives.ReadUInt64LittleEndian(ident.AsSpan(32)) : BinaryPrimitives.ReadUInt32LittleEndian(ident.AsSpan(28));
        long shoff = is64 ? (long)BinaryPrimitives.ReadUInt64LittleEndian(ident.AsSpan(40)) : BinaryPrimitives.ReadUInt32LittleEndian(ident.AsSpan(32));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(ident.AsSpan(is64 ? 54 : 42));
        long phnum = BinaryPrimitives.ReadUInt16LittleEndian(ident.AsSpan(is64 ? 56 : 44));
        int expectedPhent = is64 ? ElfConstants.Elf64PhdrSize : 32;
        if (phentsize != expectedPhent)
        {
            throw new VmStateFormatException(is64 ? 54 : 42, S, $"e_phentsize {phentsize} (expected {expectedPhent})");
        }

        if (phnum == ElfConstants.PnXnum)
        {
            // PN_XNUM: the real count is sh_info of section header 0.
            byte[] sh0 = new byte[is64 ? 64 : 40];
            if (shoff <= 0 || source.Read(shoff, sh0) != sh0.Length)
            {
                throw new VmStateFormatException(shoff, "section header 0", "e_phnum is PN_XNUM (0xffff) but section header 0 cannot be read");
            }

            phnum = BinaryPrimitives.ReadUInt32LittleEndian(sh0.AsSpan(is64 ? 44 : 28));
        }

        if (phnum > MaxProgramHeaders || phoff < 0 || phoff + (phnum * phentsize) > source.Length)
        {
            throw new VmStateFormatException(phoff, "program headers", $"{phnum} headers of {phentsize} bytes at {phoff} do not fit in the file ({source.Length} bytes)");
        }

        byte[] phdrs = new byte[phnum * phentsize];
        source.Read(phoff, phdrs);
        var segments = new List<(MemoryRange Range, long FileOffset, ulong FileSize)>();
        var notes = new List<ElfNote>();
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> p = phdrs.AsSpan(i * phentsize, phentsize);
            uint ptype = BinaryPrimitives.ReadUInt32LittleEndian(p);
            ulong offset, paddr, filesz, memsz;
            if (is64)
            {
                offset = BinaryPrimitives.ReadUInt64LittleEndian(p[8..]);
                paddr = BinaryPrimitives.ReadUInt64LittleEndian(p[24..]);
                filesz = BinaryPrimitives.ReadUInt64LittleEndian(p[32..]);
                memsz = BinaryPrimitives.ReadUInt64LittleEndian(p[40..]);
            }
            else
            {
                offset = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
                paddr = BinaryPrimitives.ReadUInt32LittleEndian(p[12..]);
                filesz = BinaryPrimitives.ReadUInt32LittleEndian(p[16..]);
                memsz = BinaryPrimitives.ReadUInt32LittleEndian(p[20..]);
            }

            long where = phoff + (i * phentsize);
            if (offset > (ulong)source.Length || filesz > (ulong)source.Length - offset)
            {
                throw new VmStateFormatException(where, $"program header {i}", $"segment [0x{offset:x}, +0x{filesz:x}) runs past the end of the file ({source.Length} bytes)");
            }

            if (ptype == ElfConstants.PtNote)
            {
                if (filesz > MaxNotesSize)
                {
                    throw new VmStateFormatException(where, $"program header {i}", $"PT_NOTE of {filesz} bytes (limit {MaxNotesSize})");
                }

                byte[] data = new byte[filesz];
                source.Read((long)offset, data);
                notes.AddRange(ElfNote.DecodeAll(data, (long)offset));
            }
            else if (ptype == ElfConstants.PtLoad && memsz > 0)
            {
                if (memsz < filesz || paddr + memsz < paddr)
                {
                    throw new VmStateFormatException(where, $"program header {i}", $"p_memsz 0x{memsz:x} is smaller than p_filesz 0x{filesz:x} or wraps the address space");
                }

                segments.Add((new MemoryRange(paddr, memsz, $"PT_LOAD[{i}]"), (long)offset, filesz));
            }
        }

        // Paging dumps (and our kernel-address aliases) map the same physical bytes several times: keep each
        // physical address once, trimming a segment that starts inside the previous one.
        segments.Sort((a, b) => a.Range.Start != b.Range.Start ? a.Range.Start.CompareTo(b.Range.Start) : b.Range.Length.CompareTo(a.Range.Length));
        var distinct = new List<(MemoryRange, long, ulong)>();
        ulong coveredEnd = 0;
        foreach (var s in segments)
        {
            if (distinct.Count > 0 && s.Range.Start < coveredEnd)
            {
                if (s.Range.End <= coveredEnd)
                {
                    continue;
                }

                ulong cut = coveredEnd - s.Range.Start;
                ulong fileLeft = s.FileSize > cut ? s.FileSize - cut : 0;
                distinct.Add((new MemoryRange(coveredEnd, s.Range.Length - cut, s.Range.Name), s.FileOffset + (long)cut, fileLeft));
            }
            else
            {
                distinct.Add(s);
            }

            coveredEnd = Math.Max(coveredEnd, s.Range.End);
        }

        var cpus = new List<X86CpuState>();
        var prstatus = new List<ElfNote>();
        byte[]? vmcoreinfo = null;
        foreach (ElfNote n in notes)
        {
            if (n.Name == "QEMU" && n.Type == 0)
            {
                var cpu = new X86CpuState { Index = cpus.Count };
                try
                {
                    X86CoreNotes.ReadQemuCpuState(n.Descriptor, cpu);

                    // QEMUCPUState carries no EFER; a 64-bit code segment (CS.L) with paging on means long mode
                    // (EFER.LME|LMA), which is what paging-mode detection needs.
                    if (cpu.Segments[X86CpuState.Cs].Long && (cpu.Cr0 & (1UL << 31)) != 0)
                    {
                        cpu.Efer |= 0x500;
                    }
                }
                catch (FormatException e)
                {
                    throw new VmStateFormatException(phoff, "QEMU note", e.Message, e);
                }

                cpus.Add(cpu);
            }
            else if (n.Name == "CORE" && n.Type == ElfNote.NtPrstatus)
            {
                prstatus.Add(n);
            }
            else if (n.Name == "VMCOREINFO")
            {
                byte[] whole = new byte[n.EncodedSize];
                n.Encode(whole);
                vmcoreinfo = whole;
            }
        }

        var warnings = new List<string>();
        if (cpus.Count == 0 && is64)
        {
            foreach (ElfNote n in prstatus)
            {
                var cpu = new X86CpuState();
                try
                {
                    X86CoreNotes.ReadPrstatus(n.Descriptor, cpu);
                }
                catch (FormatException e)
                {
                    throw new VmStateFormatException(phoff, "NT_PRSTATUS note", e.Message, e);
                }

                cpus.Add(cpu);
            }

            if (cpus.Count > 0)
            {
                warnings.Add("no QEMU CPU notes: control registers and segment bases are unknown (registers from NT_PRSTATUS)");
            }
        }

        var memory = new ElfPhysicalMemory(source, distinct);
        var blocks = new List<RamBlockInfo>();
        foreach ((MemoryRange r, long _, ulong _) in distinct)
        {
            blocks.Add(new RamBlockInfo(r.Name, r.Length, [new BlockMapping(r.Start, 0, r.Length)]));
        }

        return new MachineState(sourcePath, is64 ? "ELF64 core" : "ELF32 core", null, memory, cpus, [], blocks, warnings, source)
        {
            VmcoreinfoNote = vmcoreinfo,
            ElfNotes = notes,
        };
    }
}
