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

    /// <summary>Largest total of PT_NOTE segments accepted.</summary>
    public const int MaxNotesSize = 64 << 20;

    /// <summary>
    /// Most notes accepted. QEMU 7.2 dump.c writes two per vCPU (NT_PRSTATUS and "QEMU") plus VMCOREINFO, so
    /// this is room for 32,767 vCPUs, far above <see cref="ReaderLimits.MaxCpus"/>.
    /// </summary>
    public const int MaxNotes = 65536;

    /// <summary>True when the source starts with the ELF magic.</summary>
    public static bool IsElf(IRandomAccessSource source)
    {
        Span<byte> m = stackalloc byte[4];
        return source.Read(0, m) == 4 && m[0] == 0x7f && m[1] == (byte)'E' && m[2] == (byte)'L' && m[3] == (byte)'F';
    }

    /// <summary>
    /// Parses the core; the returned state owns <paramref name="source"/>. <paramref name="limits"/> caps the guest
    /// memory the segments may map (<see cref="ReaderLimits.MaxGuestRam"/>; default <see cref="ReaderLimits.Default"/>).
    /// </summary>
    public static MachineState Read(IRandomAccessSource source, string sourcePath, ReaderLimits? limits = null)
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
        if (machine != ElfConstants.EmX86_64 && machine != ElfConstants.Em386 && !(machine == ElfConstants.EmAarch64 && is64))
        {
            throw new VmStateFormatException(18, S, $"e_machine {machine} (expected 62 x86-64, 3 i386 or 183 AArch64)");
        }

        // e_phoff/e_shoff are u64 in ELF64: kept unsigned so that a value near 2^63 or 2^64 can't turn negative
        // or wrap when added to a size (found by hand: e_phoff 0x7fff_ffff_ffff_fff0 passed a signed check and the
        // core was read as having no program headers).
        ulong fileLength = (ulong)source.Length;
        ulong phoff = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(ident.AsSpan(32)) : BinaryPrimitives.ReadUInt32LittleEndian(ident.AsSpan(28));
        ulong shoff = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(ident.AsSpan(40)) : BinaryPrimitives.ReadUInt32LittleEndian(ident.AsSpan(32));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(ident.AsSpan(is64 ? 54 : 42));
        ulong phnum = BinaryPrimitives.ReadUInt16LittleEndian(ident.AsSpan(is64 ? 56 : 44));
        int expectedPhent = is64 ? ElfConstants.Elf64PhdrSize : 32;
        if (phentsize != expectedPhent)
        {
            throw new VmStateFormatException(is64 ? 54 : 42, S, $"e_phentsize {phentsize} (expected {expectedPhent})");
        }

        if (phnum == ElfConstants.PnXnum)
        {
            // PN_XNUM: the real count is sh_info of section header 0 (System V gABI, "Program Header").
            byte[] sh0 = new byte[is64 ? 64 : 40];
            if (shoff == 0 || shoff > fileLength || (ulong)sh0.Length > fileLength - shoff || source.Read((long)shoff, sh0) != sh0.Length)
            {
                throw new VmStateFormatException(is64 ? 40 : 32, "section header 0", $"e_phnum is PN_XNUM (0xffff) but section header 0 at e_shoff 0x{shoff:x} is not inside the file ({fileLength} bytes)");
            }

            phnum = BinaryPrimitives.ReadUInt32LittleEndian(sh0.AsSpan(is64 ? 44 : 28));
        }

        if (phnum == 0)
        {
            throw new VmStateFormatException(is64 ? 56 : 44, S, "e_phnum 0: a core needs program headers (PT_LOAD segments with the guest's memory)");
        }

        // Overflow-safe: phnum <= 2^22 and phentsize <= 2^16, so the product fits; compare with what is left after phoff.
        if (phnum > MaxProgramHeaders || phoff > fileLength || phnum * (ulong)phentsize > fileLength - phoff)
        {
            throw new VmStateFormatException(is64 ? 32 : 28, "program headers", $"e_phnum {phnum} headers of {phentsize} bytes at e_phoff 0x{phoff:x} do not fit in the file ({fileLength} bytes; at most {MaxProgramHeaders} headers)");
        }

        byte[] phdrs = new byte[(int)phnum * phentsize];
        if (source.Read((long)phoff, phdrs) != phdrs.Length)
        {
            throw new VmStateFormatException((long)phoff, "program headers", $"could not read {phdrs.Length} bytes at 0x{phoff:x}");
        }

        limits ??= ReaderLimits.Default;
        var warnings = new List<string>();
        var segments = new List<(MemoryRange Range, long FileOffset, ulong FileSize)>();
        var notes = new List<ElfNote>();
        int loads = 0;
        ulong noteBytes = 0;
        ulong clippedBytes = 0;
        int clippedSegments = 0;
        for (int i = 0; i < (int)phnum; i++)
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

            long where = (long)phoff + (i * phentsize);
            string structure = $"program header {i}";
            if (ptype != ElfConstants.PtNote && ptype != ElfConstants.PtLoad)
            {
                continue;
            }

            if (offset > fileLength || filesz > fileLength - offset)
            {
                throw new VmStateFormatException(where, structure, $"segment [0x{offset:x}, +0x{filesz:x}) runs past the end of the file ({fileLength} bytes)");
            }

            if (ptype == ElfConstants.PtNote)
            {
                // The total, not each segment: many PT_NOTE headers may name the same bytes.
                noteBytes += filesz;
                if (noteBytes > MaxNotesSize)
                {
                    throw new VmStateFormatException(where, structure, $"PT_NOTE segments of {noteBytes} bytes in all (limit {MaxNotesSize})");
                }

                byte[] data = new byte[filesz];
                if (source.Read((long)offset, data) != data.Length)
                {
                    throw new VmStateFormatException((long)offset, structure, $"could not read the {filesz} bytes of the PT_NOTE segment");
                }

                notes.AddRange(ElfNote.DecodeAll(data, (long)offset, MaxNotes - notes.Count));
                continue;
            }

            loads++;
            if (memsz < filesz)
            {
                throw new VmStateFormatException(where, structure, $"p_memsz 0x{memsz:x} is smaller than p_filesz 0x{filesz:x}");
            }

            // [p_paddr, p_paddr + p_memsz) must not wrap past 2^64 (MemoryRange.End must be representable).
            if (memsz > 0 && paddr > ulong.MaxValue - memsz)
            {
                throw new VmStateFormatException(where, structure, $"p_paddr 0x{paddr:x} + p_memsz 0x{memsz:x} wraps the 64-bit address space");
            }

            // Bytes past p_filesz are not in the core. QEMU 7.2 dump.c (write_elf64_load) writes p_memsz > p_filesz
            // only for ranges it had no RAM for (MMIO under a paging dump, or cut off by a begin/length filter), so
            // they are not known to be zero: they stay unmapped. This also keeps the mapped total within the file,
            // whatever p_memsz claims (a 1 TiB p_memsz would otherwise be 1 TiB of zeroes for extract and scans).
            if (memsz > filesz)
            {
                clippedBytes += memsz - filesz;
                clippedSegments++;
            }

            // A p_paddr above any physical address (our kernel-virtual PT_LOADs carry p_paddr = p_vaddr) is not RAM.
            if (filesz > 0 && paddr <= ElfConstants.MaxPhysicalAddress)
            {
                segments.Add((new MemoryRange(paddr, filesz, $"PT_LOAD[{i}]"), (long)offset, filesz));
            }
        }

        if (loads == 0)
        {
            throw new VmStateFormatException(is64 ? 32 : 28, "program headers", $"none of the {phnum} program headers is a PT_LOAD: the core holds no memory");
        }

        if (segments.Count == 0)
        {
            throw new VmStateFormatException(is64 ? 32 : 28, "program headers", $"none of the {loads} PT_LOAD segments holds guest-physical memory (p_filesz 0, or p_paddr beyond any physical address): the core holds no memory");
        }

        if (clippedSegments > 0)
        {
            warnings.Add($"{clippedSegments} PT_LOAD segment(s) claim 0x{clippedBytes:x} bytes more memory (p_memsz) than the file holds (p_filesz); those addresses are left unmapped");
        }

        // Paging dumps (and our kernel-address aliases) map the same physical bytes several times: keep each
        // physical address once, trimming a segment that starts inside the previous one.
        segments.Sort((a, b) => a.Range.Start != b.Range.Start ? a.Range.Start.CompareTo(b.Range.Start) : b.Range.Length.CompareTo(a.Range.Length));
        var distinct = new List<(MemoryRange, long, ulong)>();
        ulong coveredEnd = 0;
        ulong mapped = 0;
        int conflicts = 0;
        (MemoryRange Range, long FileOffset) coverer = default;
        foreach (var s in segments)
        {
            (MemoryRange Range, long FileOffset, ulong FileSize) kept = s;
            if (distinct.Count > 0 && s.Range.Start < coveredEnd)
            {
                // An alias (QEMU paging dumps, our kernel-address segments) names the same file bytes for the same
                // physical address; a segment that names other bytes for it contradicts the first, which wins.
                if (s.FileOffset - coverer.FileOffset != (long)(s.Range.Start - coverer.Range.Start))
                {
                    conflicts++;
                }

                if (s.Range.End <= coveredEnd)
                {
                    continue;
                }

                ulong cut = coveredEnd - s.Range.Start;
                kept = (new MemoryRange(coveredEnd, s.Range.Length - cut, s.Range.Name), s.FileOffset + (long)cut, s.FileSize - cut);
            }

            // Checked against the same cap as a migration stream's RAM, so a core of many aliasing headers can't
            // present more guest memory than any reader of this library accepts.
            mapped += kept.Range.Length;
            if (mapped > limits.MaxGuestRam)
            {
                throw new VmStateFormatException(is64 ? 32 : 28, "program headers", $"the PT_LOAD segments map more than 0x{limits.MaxGuestRam:x} bytes of guest-physical memory (ReaderLimits.MaxGuestRam)");
            }

            distinct.Add(kept);
            if (kept.Range.End > coveredEnd)
            {
                // The segment that reaches furthest: a later one that starts before its end overlaps it.
                coveredEnd = kept.Range.End;
                coverer = (kept.Range, kept.FileOffset);
            }
        }

        if (conflicts > 0)
        {
            warnings.Add($"{conflicts} PT_LOAD segment(s) overlap an earlier one at the same guest-physical addresses with different file bytes; the segment with the lower address (or the longer one) is used");
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
                    throw new VmStateFormatException((long)phoff, "QEMU note", e.Message, e);
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
                    throw new VmStateFormatException((long)phoff, "NT_PRSTATUS note", e.Message, e);
                }

                cpus.Add(cpu);
            }

            if (cpus.Count > 0)
            {
                warnings.Add("no QEMU CPU notes: control registers and segment bases are unknown (registers from NT_PRSTATUS)");
            }
        }

        // AArch64: the vCPUs are the NT_PRSTATUS notes, each followed by its NT_FPREGSET (QEMU 7.2
        // target/arm/arch_dump.c); a core carries no system registers.
        var armCpus = new List<Arch.Arm64.Arm64CpuState>();
        if (machine == ElfConstants.EmAarch64)
        {
            cpus.Clear();
            foreach (ElfNote n in notes)
            {
                if (n.Name == "CORE" && n.Type == ElfNote.NtPrstatus)
                {
                    var cpu = new Arch.Arm64.Arm64CpuState { Index = armCpus.Count };
                    Arm64CoreNotes.ReadPrstatus(n.Descriptor, cpu);
                    armCpus.Add(cpu);
                }
                else if (n.Name == "CORE" && n.Type == Arm64CoreNotes.NtFpregset && armCpus.Count > 0 && n.Descriptor.Length >= Arm64CoreNotes.FpregsetSize)
                {
                    Arch.Arm64.Arm64CpuState cpu = armCpus[^1];
                    n.Descriptor.AsSpan(0, 512).CopyTo(cpu.V);
                    cpu.Fpsr = BinaryPrimitives.ReadUInt32LittleEndian(n.Descriptor.AsSpan(512));
                    cpu.Fpcr = BinaryPrimitives.ReadUInt32LittleEndian(n.Descriptor.AsSpan(516));
                    cpu.HasFpSimd = true;
                }
            }

            warnings.RemoveAll(w => w.StartsWith("no QEMU CPU notes", StringComparison.Ordinal));
        }

        var memory = new FileRangeMemory(source, distinct);
        var blocks = new List<RamBlockInfo>();
        foreach ((MemoryRange r, long _, ulong _) in distinct)
        {
            blocks.Add(new RamBlockInfo(r.Name, r.Length, [new BlockMapping(r.Start, 0, r.Length)]));
        }

        var origin = new ElfCoreOrigin(sourcePath, is64 ? "ELF64 core" : "ELF32 core", notes, vmcoreinfo);
        return new MachineState(origin, null, memory, cpus, [], blocks, warnings, source) { Arm64Cpus = armCpus };
    }
}
