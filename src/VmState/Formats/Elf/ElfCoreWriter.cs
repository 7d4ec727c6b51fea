using System.Buffers;
using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Formats.Elf;

/// <summary>
/// Writes a machine state as an ELF64 x86-64 core in the layout of QEMU's <c>dump-guest-memory</c> (paging off):
/// one PT_LOAD per guest-physical RAM range with <c>p_paddr</c> = the guest-physical address and
/// <c>p_vaddr</c> = <c>p_paddr</c> (so gdb reads memory by physical address, as with QEMU's own dump), per vCPU an
/// NT_PRSTATUS and a "QEMU" note, and the guest's VMCOREINFO note when found. Segment data is page-aligned;
/// all-zero chunks are left as holes (the file is sparse). The output appears only when complete.
/// </summary>
public static class ElfCoreWriter
{
    private const int ChunkSize = 4 << 20;
    private const int DataAlignment = 4096;

    /// <summary>Writes <paramref name="machine"/> to <paramref name="path"/> (temp file, then rename).</summary>
    public static ElfCoreSummary Write(MachineState machine, string path, byte[]? vmcoreinfoNote, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default) =>
        Write(machine, path, vmcoreinfoNote, [], progress, cancellationToken);

    /// <summary>
    /// Writes <paramref name="machine"/> with extra PT_LOADs for <paramref name="virtualMappings"/>: each has
    /// <c>p_vaddr</c> = the virtual address and <c>p_paddr</c> = the physical one, and points at the same file bytes
    /// as the physical segment (no data is duplicated), so gdb can read those virtual addresses.
    /// </summary>
    public static ElfCoreSummary Write(MachineState machine, string path, byte[]? vmcoreinfoNote, IReadOnlyList<Arch.X86.VirtualMapping> virtualMappings, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        using OutputFile output = OutputFile.Create(path, OutputRules.ForInputs([machine.SourcePath]));
        ElfCoreSummary summary = WriteTo(machine, output, vmcoreinfoNote, virtualMappings, progress, cancellationToken);
        output.Commit();
        return summary;
    }

    /// <summary>
    /// Writes the core into <paramref name="output"/>'s temporary without committing it, for callers that make
    /// several outputs appear together (extract: the core and the hardware files).
    /// </summary>
    public static ElfCoreSummary WriteTo(MachineState machine, OutputFile output, byte[]? vmcoreinfoNote, IReadOnlyList<Arch.X86.VirtualMapping> virtualMappings, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        IReadOnlyList<MemoryRange> ranges = machine.Memory.Ranges;
        var aliases = new List<(ulong Vaddr, ulong Paddr, ulong Size, int Range)>();
        foreach (Arch.X86.VirtualMapping vm in virtualMappings)
        {
            // Split a run where it leaves the physical range it starts in; drop what RAM does not back.
            ulong done = 0;
            while (done < vm.Size)
            {
                ulong pa = vm.PhysicalAddress + done;
                int ri = ranges.FindRange(pa);
                if (ri < 0)
                {
                    done += 0x1000 - (pa & 0xFFF);
                    continue;
                }

                ulong n = Math.Min(vm.Size - done, ranges[ri].End - pa);
                aliases.Add((vm.VirtualAddress + done, pa, n, ri));
                done += n;
            }
        }

        var notes = new List<ElfNote>();
        foreach (var cpu in machine.Cpus)
        {
            notes.Add(X86CoreNotes.Prstatus(cpu));
        }

        foreach (var cpu in machine.Cpus)
        {
            notes.Add(X86CoreNotes.QemuCpuState(cpu));
        }

        int notesSize = 0;
        foreach (ElfNote n in notes)
        {
            notesSize += n.EncodedSize;
        }

        if (vmcoreinfoNote is not null)
        {
            notesSize += vmcoreinfoNote.Length;
        }

        long phnum = 1 + ranges.Count + aliases.Count;
        bool extended = phnum >= ElfConstants.PnXnum;
        long shoff = extended ? ElfConstants.Elf64HeaderSize : 0;
        long phoff = ElfConstants.Elf64HeaderSize + (extended ? ElfConstants.Elf64ShdrSize : 0);
        long notesOffset = phoff + (phnum * ElfConstants.Elf64PhdrSize);
        long headerSize = notesOffset + notesSize;
        if (headerSize > int.MaxValue)
        {
            throw new InvalidOperationException($"{ranges.Count} memory ranges need more header space than an ELF writer buffer holds");
        }

        byte[] header = new byte[headerSize];
        Span<byte> h = header;
        ElfHeaders.WriteCoreHeader(h, phoff, shoff, phnum);

        long pos = phoff;
        WritePhdr(h, ref pos, ElfConstants.PtNote, (ulong)notesOffset, 0, 0, (ulong)notesSize, 0);
        long dataOffset = Align(headerSize, DataAlignment);
        long[] segmentOffsets = new long[ranges.Count];
        for (int i = 0; i < ranges.Count; i++)
        {
            MemoryRange r = ranges[i];
            segmentOffsets[i] = dataOffset;
            WritePhdr(h, ref pos, ElfConstants.PtLoad, (ulong)dataOffset, r.Start, r.Start, r.Length, 0);
            dataOffset += checked((long)r.Length);
        }

        foreach ((ulong vaddr, ulong paddr, ulong size, int ri) in aliases)
        {
            ulong offset = (ulong)segmentOffsets[ri] + (paddr - ranges[ri].Start);
            WritePhdr(h, ref pos, ElfConstants.PtLoad, offset, vaddr, paddr, size, 0);
        }

        long np = notesOffset;
        foreach (ElfNote n in notes)
        {
            np += n.Encode(h[(int)np..]);
        }

        vmcoreinfoNote?.CopyTo(h[(int)np..]);

        long total = dataOffset;
        long written = 0;
        SafeFileHandle file = output.Handle;
        RandomAccess.SetLength(file, total);
        RandomAccess.Write(file, header, 0);
        // Double buffering: the next chunk is read on the thread pool while this one is written, so
        // reading the input and writing the core overlap on two cores.
        var chunks = new List<(ulong Address, int Length, long FileOffset)>();
        for (int i = 0; i < ranges.Count; i++)
        {
            for (ulong done = 0; done < ranges[i].Length; done += ChunkSize)
            {
                chunks.Add((ranges[i].Start + done, (int)Math.Min((ulong)ChunkSize, ranges[i].Length - done), segmentOffsets[i] + (long)done));
            }
        }

        ISparseMemory? sparse = machine.Memory as ISparseMemory;
        byte[][] buffers = [ArrayPool<byte>.Shared.Rent(ChunkSize), ArrayPool<byte>.Shared.Rent(ChunkSize)];
        Task<bool>? next = null;
        try
        {
            bool ReadChunk(int index)
            {
                (ulong address, int length, long _) = chunks[index];
                if (sparse is not null && sparse.IsZero(address, (ulong)length))
                {
                    return false;
                }

                Span<byte> chunk = buffers[index & 1].AsSpan(0, length);
                machine.Memory.ReadExactly(address, chunk);
                return chunk.ContainsAnyExcept((byte)0);
            }

            next = chunks.Count > 0 ? Task.Run(() => ReadChunk(0), cancellationToken) : null;
            for (int c = 0; c < chunks.Count; c++)
            {
                bool hasData = next!.GetAwaiter().GetResult();
                int following = c + 1;
                next = following < chunks.Count ? Task.Run(() => ReadChunk(following), cancellationToken) : null;
                cancellationToken.ThrowIfCancellationRequested();
                if (hasData)
                {
                    RandomAccess.Write(file, buffers[c & 1].AsSpan(0, chunks[c].Length), chunks[c].FileOffset);
                }

                written += chunks[c].Length;
                progress?.Report((written, total));
            }
        }
        finally
        {
            // A read still running on the thread pool (after a failure or a cancellation) must finish before its
            // buffer goes back to the pool.
            try
            {
                next?.Wait(CancellationToken.None);
            }
            catch (AggregateException)
            {
            }

            ArrayPool<byte>.Shared.Return(buffers[0]);
            ArrayPool<byte>.Shared.Return(buffers[1]);
        }

        return new ElfCoreSummary(output.Path, total, ranges.Count, machine.Cpus.Count, vmcoreinfoNote is not null) { VirtualSegments = aliases.Count };
    }

    private static void WritePhdr(Span<byte> h, ref long pos, uint type, ulong offset, ulong vaddr, ulong paddr, ulong size, uint flags)
    {
        ElfHeaders.WritePhdr(h[(int)pos..], type, flags, offset, vaddr, paddr, size, size, 0);
        pos += ElfConstants.Elf64PhdrSize;
    }

    private static long Align(long v, long a) => (v + a - 1) / a * a;
}
