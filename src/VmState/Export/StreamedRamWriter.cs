using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using Microsoft.Win32.SafeHandles;
using VmState.Formats.Migration;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Export;

/// <summary>
/// Writes guest RAM into a core file while the migration stream is parsed, so extract reads the stream once. Each
/// RAM block gets a page-aligned region of the file after <see cref="HeaderRoom"/> bytes left for the core's headers
/// and notes; a page record is written at its block's region plus its offset, straight from the parser's read
/// buffer (the buffers go round between the parser and a writer thread, so reading and writing overlap and no page is
/// copied in between). Pages with no record, or zero records, stay holes; a later record of a page overwrites an
/// earlier one, as in the stream. After the parse, <see cref="OffsetOf"/> gives each guest-physical RAM range's place
/// in the file for the core's PT_LOADs.
/// </summary>
internal sealed class StreamedRamWriter : IRamStreamObserver, IDisposable
{
    /// <summary>The room before the RAM data for the ELF header, program headers and notes (a hole when unused).</summary>
    public const long HeaderRoom = 1 << 20;

    private const int Buffers = 8;
    private const long Alignment = 4096;

    private readonly SafeFileHandle _file;
    private readonly BlockingCollection<byte[]> _free = new(Buffers);
    private readonly BlockingCollection<Batch> _full = new(Buffers);
    private readonly Thread _writer;
    private readonly byte[]?[] _fillPages = new byte[]?[256];
    private readonly List<long> _noteCandidates = [];
    private List<(long Offset, ReadOnlyMemory<byte> Data)> _pieces = [];
    private (string Name, ulong Length)[] _blocks = [];
    private long[] _bases = [];
    private int _pageSize;
    private int _allocated;
    private volatile ExceptionDispatchInfo? _failure;
    private bool _completed;

    /// <summary>Writes into <paramref name="file"/> (a new, empty core file).</summary>
    public StreamedRamWriter(SafeFileHandle file)
    {
        _file = file;
        _writer = new Thread(WriteLoop) { IsBackground = true, Name = "vmstate RAM writer" };
        _writer.Start();
    }

    /// <inheritdoc />
    public void BlockList(IReadOnlyList<(string Name, ulong Length)> blocks, int pageSize)
    {
        _pageSize = pageSize;
        _blocks = [.. blocks];
        _bases = new long[blocks.Count];
        long next = HeaderRoom;
        for (int i = 0; i < blocks.Count; i++)
        {
            // The reader bounds the total by ReaderLimits.MaxGuestRam, so the sum fits in a file offset.
            _bases[i] = next;
            next = checked(next + (((long)blocks[i].Length + Alignment - 1) & ~(Alignment - 1)));
        }
    }

    /// <inheritdoc />
    public void Page(int block, ulong offset, ReadOnlyMemory<byte> data)
    {
        _pieces.Add((_bases[block] + (long)offset, data));
    }

    /// <inheritdoc />
    public void Fill(int block, ulong offset, byte value, bool replaces)
    {
        _pieces.Add((_bases[block] + (long)offset, FillPage(value)));
    }

    /// <inheritdoc />
    public byte[] ExchangeBuffer(byte[] full)
    {
        _failure?.Throw();
        if (_pieces.Count == 0)
        {
            // No page of this buffer is waiting to be written (zero records only, or device data): the parser keeps
            // it, and the writer thread is not woken.
            return full;
        }

        Submit(full);
        if (_allocated < Buffers)
        {
            _allocated++;
            return new byte[full.Length];
        }

        return _free.Take();
    }

    /// <summary>
    /// Writes what the parse handed last and waits for every write; rethrows a write's failure. Call once the parse
    /// is over (the parser no longer touches its read buffer).
    /// </summary>
    public void Complete()
    {
        if (!_completed)
        {
            _completed = true;
            Submit(null);
            _full.CompleteAdding();
            _writer.Join();
        }

        _failure?.Throw();
    }

    /// <summary>
    /// Where guest-physical <paramref name="range"/> of <paramref name="machine"/> is in the file, or null when its bytes
    /// were not written here (not a migration stream, or not one block region).
    /// </summary>
    public long? OffsetOf(MachineState machine, MemoryRange range)
    {
        if (!_completed || _failure is not null || machine.Memory is not MigrationRamMemory memory
            || !memory.TryLocate(range.Start, out RamBlock block, out ulong blockOffset, out ulong contiguous)
            || contiguous < range.Length || block.ListIndex >= _blocks.Length || _blocks[block.ListIndex].Name != block.Name)
        {
            return null;
        }

        return _bases[block.ListIndex] + (long)blockOffset;
    }

    /// <summary>
    /// The guest-physical pages of <paramref name="machine"/> in which a VMCOREINFO note's name may start (see
    /// <see cref="VmcoreinfoLocator.MayStartName"/>), found while the pages were written; null when RAM was not
    /// streamed here, so RAM must be scanned whole.
    /// </summary>
    public IReadOnlyList<ulong>? VmcoreinfoCandidates(MachineState machine)
    {
        if (!_completed || _failure is not null || _bases.Length == 0 || machine.Memory is not MigrationRamMemory memory)
        {
            return null;
        }

        var pages = new List<ulong>();
        foreach (long at in _noteCandidates)
        {
            int block = Array.BinarySearch(_bases, at);
            block = block >= 0 ? block : ~block - 1;
            ulong blockOffset = (ulong)(at - _bases[block]);
            foreach (MemoryRange r in memory.Ranges)
            {
                if (memory.TryLocate(r.Start, out RamBlock b, out ulong first, out _) && b.ListIndex == block
                    && blockOffset >= first && blockOffset - first < r.Length)
                {
                    pages.Add(r.Start + (blockOffset - first));
                }
            }
        }

        return pages;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (!_completed)
        {
            _completed = true;
            _full.CompleteAdding();
            _writer.Join();
        }

        _free.Dispose();
        _full.Dispose();
    }

    private void Submit(byte[]? buffer)
    {
        if (_pieces.Count == 0 && buffer is null)
        {
            return;
        }

        _full.Add(new Batch(buffer, _pieces));
        _pieces = [];
    }

    private byte[] FillPage(byte value)
    {
        byte[]? page = _fillPages[value];
        if (page is null)
        {
            page = new byte[_pageSize];
            page.AsSpan().Fill(value);
            _fillPages[value] = page;
        }

        return page;
    }

    private void WriteLoop()
    {
        var run = new List<ReadOnlyMemory<byte>>();
        foreach (Batch batch in _full.GetConsumingEnumerable())
        {
            if (_failure is null)
            {
                try
                {
                    WriteBatch(batch.Pieces, run);
                }
                catch (Exception e)
                {
                    // Rethrown on the parsing thread (ExchangeBuffer, Complete); this thread must go on returning buffers.
                    _failure = ExceptionDispatchInfo.Capture(e);
                }
            }

            if (batch.Buffer is not null)
            {
                _free.Add(batch.Buffer);
            }
        }
    }

    /// <summary>One gathered write per run of pieces that follow each other in the file, in the order handed.</summary>
    private void WriteBatch(List<(long Offset, ReadOnlyMemory<byte> Data)> pieces, List<ReadOnlyMemory<byte>> run)
    {
        int start = 0;
        while (start < pieces.Count)
        {
            run.Clear();
            long at = pieces[start].Offset;
            long next = at;
            int end = start;
            while (end < pieces.Count && pieces[end].Offset == next && run.Count < 1024)
            {
                run.Add(pieces[end].Data);
                next += pieces[end].Data.Length;
                end++;
            }

            RandomAccess.Write(_file, run, at);
            for (int i = start; i < end; i++)
            {
                if (VmcoreinfoLocator.MayStartName(pieces[i].Data.Span))
                {
                    _noteCandidates.Add(pieces[i].Offset);
                }
            }

            start = end;
        }
    }

    private sealed record Batch(byte[]? Buffer, List<(long Offset, ReadOnlyMemory<byte> Data)> Pieces);
}
