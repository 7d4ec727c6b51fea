using System.Buffers;
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
    /// Writes <paramref name="machine"/> with extra PT_LOADs for <paramref name="virtualMappings"/>, after the physical
    /// ones and in ascending <c>p_vaddr</c>: each has <c>p_vaddr</c> = <c>p_paddr</c> = the virtual address and points
    /// at the same file bytes as the physical segment (no data is duplicated), so gdb and drgn can read those virtual
    /// addresses. Their <c>p_paddr</c> is a kernel-half address, above any physical one
    /// (<see cref="ElfConstants.MaxPhysicalAddress"/>): a reader that takes every PT_LOAD at <c>p_paddr</c> as
    /// physical memory (Volatility 3) still finds sorted, non-overlapping segments and RAM where it is, and crash
    /// (which finds the kernel through VMCOREINFO) and this library's reader leave them out of physical memory.
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
    /// <exception cref="InvalidOperationException">
    /// The core cannot be written (<see cref="ElfCoreBuilder.Verify"/> says why), e.g. <paramref name="vmcoreinfoNote"/>
    /// is not one encoded ELF note.
    /// </exception>
    /// <exception cref="ArgumentException">A virtual mapping lies below the kernel half of the address space.</exception>
    public static ElfCoreSummary WriteTo(MachineState machine, OutputFile output, byte[]? vmcoreinfoNote, IReadOnlyList<Arch.X86.VirtualMapping> virtualMappings, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default) =>
        WriteTo(machine, output, vmcoreinfoNote, virtualMappings, null, progress, cancellationToken);

    /// <summary>
    /// Like <see cref="WriteTo(MachineState, OutputFile, byte[], IReadOnlyList{Arch.X86.VirtualMapping}, IProgress{ValueTuple{long, long}}, CancellationToken)"/>,
    /// for a file that already holds some RAM ranges: <paramref name="placedRam"/> gives, for a RAM range, the file
    /// offset where its bytes already are (written while the input was read), or null to copy it. When the headers
    /// and notes do not fit before the placed bytes, the file is emptied and every range is copied.
    /// </summary>
    public static ElfCoreSummary WriteTo(MachineState machine, OutputFile output, byte[]? vmcoreinfoNote, IReadOnlyList<Arch.X86.VirtualMapping> virtualMappings, Func<MemoryRange, long?>? placedRam, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(virtualMappings);
        IReadOnlyList<MemoryRange> ranges = machine.Memory.Ranges;
        long?[] placed = [.. ranges.Select(r => placedRam?.Invoke(r))];
        using var copier = new RamCopier(machine.Memory, progress);
        (ElfCoreBuilder core, int aliases) = Build(machine, vmcoreinfoNote, virtualMappings, range => (segment, ct) => copier.Copy(range, segment, ct), placed);
        if (placed.Any(p => p is not null) && core.Verify().Count > 0)
        {
            // The placed bytes cannot stay where they are (headers too large for the room left before them): start over.
            placed = new long?[ranges.Count];
            RandomAccess.SetLength(output.Handle, 0);
            (core, aliases) = Build(machine, vmcoreinfoNote, virtualMappings, range => (segment, ct) => copier.Copy(range, segment, ct), placed);
        }

        ElfCoreLayout layout = core.Layout();
        copier.Plan(ranges, [.. placed.Select(p => p is null)], layout.FileSize);
        layout.WriteTo(output, cancellationToken);
        copier.Finish();
        return new ElfCoreSummary(output.Path, layout.FileSize, ranges.Count, machine.Vcpus.Count, vmcoreinfoNote is not null) { VirtualSegments = aliases };
    }

    private static (ElfCoreBuilder Core, int Aliases) Build(MachineState machine, byte[]? vmcoreinfoNote, IReadOnlyList<Arch.X86.VirtualMapping> virtualMappings, Func<int, ElfSegmentSource?> source, long?[] placed)
    {
        (ElfCoreBuilder core, int aliases, _) = Plan(machine, vmcoreinfoNote, virtualMappings, source, placed);
        return (core, aliases);
    }

    /// <summary>
    /// The core of <paramref name="machine"/> as a builder: the vCPUs' notes, the VMCOREINFO note, one PT_LOAD per RAM
    /// range (written by <paramref name="source"/>'s source for that range, or at the offset <paramref name="placed"/>
    /// gives) and the kernel's virtual aliases of them.
    /// </summary>
    internal static (ElfCoreBuilder Core, int Aliases, ElfCoreSegment[] Physical) Plan(MachineState machine, byte[]? vmcoreinfoNote, IReadOnlyList<Arch.X86.VirtualMapping> virtualMappings, Func<int, ElfSegmentSource?> source, long?[] placed)
    {
        IReadOnlyList<MemoryRange> ranges = machine.Memory.Ranges;
        var core = new ElfCoreBuilder { Machine = machine.Vcpus.Count > 0 ? machine.Vcpus[0].Architecture.ElfMachine : ElfConstants.EmX86_64, NoteAlignment = 0, DataAlignment = DataAlignment };
        foreach (var cpu in machine.Cpus)
        {
            core.AddNote(X86CoreNotes.Prstatus(cpu));
        }

        foreach (var cpu in machine.Cpus)
        {
            core.AddNote(X86CoreNotes.QemuCpuState(cpu));
        }

        // AArch64: per vCPU NT_PRSTATUS then NT_FPREGSET, in QEMU's order (QEMU 7.2 target/arm/arch_dump.c).
        foreach (var cpu in machine.Arm64Cpus)
        {
            core.AddNote(Arm64CoreNotes.Prstatus(cpu));
            if (cpu.HasFpSimd)
            {
                core.AddNote(Arm64CoreNotes.Fpregset(cpu));
            }
        }

        if (vmcoreinfoNote is not null)
        {
            core.AddEncodedNote(vmcoreinfoNote);
        }

        var physical = new ElfCoreSegment[ranges.Count];
        for (int i = 0; i < ranges.Count; i++)
        {
            MemoryRange r = ranges[i];
            int range = i;
            physical[i] = placed[i] is long at
                ? core.AddPlaced(r.Start, r.Start, 0, 0, r.Length, at)
                : core.AddLoad(r.Start, r.Start, 0, 0, r.Length, r.Length, source(range));
        }

        int aliases = 0;
        foreach (Arch.X86.VirtualMapping vm in virtualMappings.OrderBy(m => m.VirtualAddress))
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
                ulong va = vm.VirtualAddress + done;
                if (va <= ElfConstants.MaxPhysicalAddress)
                {
                    throw new ArgumentException($"virtual mapping 0x{vm.VirtualAddress:x} is not in the kernel half of the address space: its PT_LOAD could not carry it as p_paddr apart from physical memory", nameof(virtualMappings));
                }

                core.AddAlias(physical[ri], pa - ranges[ri].Start, va, va, 0, 0, n);
                aliases++;
                done += n;
            }
        }

        return (core, aliases, physical);
    }

    /// <summary>
    /// Copies guest RAM into the physical segments in 4 MiB chunks, skipping chunks that are all zero (they stay holes).
    /// Double buffering: the next chunk, which may belong to the next segment, is read on the thread pool while this
    /// one is written, so reading the input and writing the core overlap on two cores. The builder calls the
    /// segments' sources in segment order, which is the order of the chunks. Memory that can gather
    /// (<see cref="IGatherMemory"/>, a migration stream) is read as runs of page records with large positional
    /// reads and written straight from that buffer with gathered writes, one buffer per page, leaving its zero pages
    /// as holes: each page is copied twice (input's page cache to the buffer, buffer to the output's page cache)
    /// instead of three times.
    /// </summary>
    private sealed class RamCopier : IDisposable
    {
        private readonly IPhysicalMemory _memory;
        private readonly IProgress<(long Done, long Total)>? _progress;
        private readonly ISparseMemory? _sparse;
        private readonly IGatherMemory? _gather;
        private readonly byte[]?[] _buffers = new byte[2][];
        private readonly int _bufferSize;
        private readonly List<GatherPiece>[] _pieces = [[], []];
        private readonly List<ReadOnlyMemory<byte>> _run = [];
        private readonly List<(int Range, ulong Address, ulong Offset, int Length)> _chunks = [];
        private Task<ChunkState>? _pending;
        private int _next;
        private long _written;
        private long _total;

        public RamCopier(IPhysicalMemory memory, IProgress<(long Done, long Total)>? progress)
        {
            _memory = memory;
            _progress = progress;
            _sparse = memory as ISparseMemory;
            _gather = memory as IGatherMemory;
            _bufferSize = Math.Max(ChunkSize, _gather?.GatherBufferSize(ChunkSize) ?? 0);
        }

        private enum ChunkState
        {
            Zero,
            Flat,
            Gathered,
        }

        /// <summary>Plans the chunks of the ranges marked in <paramref name="copy"/> (the others are in the file already).</summary>
        public void Plan(IReadOnlyList<MemoryRange> ranges, bool[] copy, long total)
        {
            _total = total;
            for (int i = 0; i < ranges.Count; i++)
            {
                if (!copy[i])
                {
                    continue;
                }

                for (ulong done = 0; done < ranges[i].Length; done += ChunkSize)
                {
                    _chunks.Add((i, ranges[i].Start + done, done, (int)Math.Min((ulong)ChunkSize, ranges[i].Length - done)));
                }
            }
        }

        public void Copy(int range, ElfSegmentOutput output, CancellationToken cancellationToken)
        {
            if (_next < _chunks.Count && _chunks[_next].Range != range)
            {
                throw new InvalidOperationException($"RAM range {range} was asked for while range {_chunks[_next].Range} was due: segments must be written in order");
            }

            while (_next < _chunks.Count && _chunks[_next].Range == range)
            {
                int c = _next;
                _pending ??= Task.Run(() => ReadChunk(c), cancellationToken);
                ChunkState state = _pending.GetAwaiter().GetResult();
                int following = c + 1;
                _pending = following < _chunks.Count ? Task.Run(() => ReadChunk(following), cancellationToken) : null;
                _next = following;
                cancellationToken.ThrowIfCancellationRequested();
                (_, _, ulong offset, int length) = _chunks[c];
                if (state == ChunkState.Flat)
                {
                    output.Write(offset, ChunkBuffer(c).AsSpan(0, length));
                }
                else if (state == ChunkState.Gathered)
                {
                    WriteGathered(output, offset, _pieces[c & 1]);
                }

                _written += length;
                _progress?.Report((_written, _total));
            }
        }

        /// <summary>Checks that every chunk was copied (a segment the builder skipped would be left zero).</summary>
        public void Finish()
        {
            if (_next != _chunks.Count)
            {
                throw new InvalidOperationException($"only {_next} of {_chunks.Count} RAM chunks were written");
            }
        }

        public void Dispose()
        {
            // A read still running on the thread pool (after a failure or a cancellation) must finish before its
            // buffer goes back to the pool.
            try
            {
                _pending?.Wait(CancellationToken.None);
            }
            catch (AggregateException)
            {
            }

            foreach (byte[]? buffer in _buffers)
            {
                if (buffer is not null)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
        }

        /// <summary>
        /// The buffer of chunk <paramref name="index"/>, rented when first needed: a core whose RAM was all placed
        /// while the stream was read (extract) copies no chunk, and two 4 MiB arrays would start a GC for nothing.
        /// Each of the two is first touched by a chunk read, and chunk reads run one after the other.
        /// </summary>
        private byte[] ChunkBuffer(int index) => _buffers[index & 1] ??= ArrayPool<byte>.Shared.Rent(_bufferSize);

        /// <summary>One gathered write per run of adjacent pieces; the gaps between runs stay holes.</summary>
        private void WriteGathered(ElfSegmentOutput output, ulong chunkOffset, List<GatherPiece> pieces)
        {
            int start = 0;
            while (start < pieces.Count)
            {
                _run.Clear();
                int end = start;
                int next = pieces[start].Offset;
                while (end < pieces.Count && pieces[end].Offset == next)
                {
                    _run.Add(pieces[end].Data);
                    next += pieces[end].Length;
                    end++;
                }

                output.Write(chunkOffset + (ulong)pieces[start].Offset, _run);
                start = end;
            }
        }

        private ChunkState ReadChunk(int index)
        {
            (_, ulong address, _, int length) = _chunks[index];
            if (_sparse is not null && _sparse.IsZero(address, (ulong)length))
            {
                return ChunkState.Zero;
            }

            if (_gather is not null && _gather.TryGather(address, length, ChunkBuffer(index), _pieces[index & 1]))
            {
                return _pieces[index & 1].Count == 0 ? ChunkState.Zero : ChunkState.Gathered;
            }

            Span<byte> chunk = ChunkBuffer(index).AsSpan(0, length);
            _memory.ReadExactly(address, chunk);
            return chunk.ContainsAnyExcept((byte)0) ? ChunkState.Flat : ChunkState.Zero;
        }
    }
}
