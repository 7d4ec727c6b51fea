using System.Buffers.Binary;
using System.Text;
using VmState.Memory;

namespace VmState.Machine;

/// <summary>
/// Finds the guest kernel's VMCOREINFO ELF note: first where QEMU's vmcoreinfo device says the guest put it
/// (QEMU 7.2 <c>hw/misc/vmcoreinfo.c</c>, the "vmcoreinfo" section), then by scanning RAM for the note header.
/// </summary>
public static class VmcoreinfoLocator
{
    private const int MaxNoteSize = 1 << 20;

    /// <summary>Pages in a candidate window: the page before a candidate, its page and the two after.</summary>
    private const int CandidateWindowPages = 4;
    private static readonly byte[] s_name = "VMCOREINFO\0"u8.ToArray();

    /// <summary>
    /// The whole note (header, name, descriptor) and how it was found, or null. With <paramref name="scan"/>, RAM is
    /// searched when neither the input nor QEMU's vmcoreinfo device has the note: all of it, or, when the caller saw
    /// every page already (a one-pass extract), only around <paramref name="candidatePages"/>, the guest-physical
    /// pages in which <see cref="MayStartName"/> was true.
    /// </summary>
    public static (byte[] Note, string How)? Find(MachineState machine, bool scan, IReadOnlyList<ulong>? candidatePages = null)
    {
        if (machine.Origin.CarriedVmcoreinfoNote is byte[] carried)
        {
            return (carried, "note in the input core");
        }

        if (machine.FindDevice("vmcoreinfo")?.State is VmsdState s
            && s.Field("has_vmcoreinfo")?.Integer == 1
            && s.Field("vmcoreinfo.guest_format")?.Integer == 1
            && s.Field("vmcoreinfo.paddr")?.Integer is ulong paddr
            && s.Field("vmcoreinfo.size")?.Integer is ulong size
            && size is >= 24 and <= MaxNoteSize)
        {
            byte[] buffer = new byte[size];
            if (machine.Memory.Read(paddr, buffer) == buffer.Length && TryTrim(buffer) is byte[] note)
            {
                return (note, $"vmcoreinfo device (guest physical 0x{paddr:x})");
            }
        }

        if (scan && ScanRam(machine.Memory, candidatePages) is (byte[] found, ulong at))
        {
            return (found, $"RAM scan (guest physical 0x{at:x})");
        }

        return null;
    }

    /// <summary>
    /// True when a VMCOREINFO note's name may start in <paramref name="page"/>: the whole name is in it, or the page
    /// ends with the name's first bytes.
    /// </summary>
    public static bool MayStartName(ReadOnlySpan<byte> page)
    {
        if (page.IndexOf(s_name) >= 0)
        {
            return true;
        }

        for (int k = Math.Min(s_name.Length - 1, page.Length); k > 0; k--)
        {
            if (page[^k..].SequenceEqual(s_name.AsSpan(0, k)))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The key=value text of a VMCOREINFO note.</summary>
    public static string Text(byte[] note)
    {
        uint descSize = BinaryPrimitives.ReadUInt32LittleEndian(note.AsSpan(4));
        return Encoding.ASCII.GetString(note, 24, (int)Math.Min(descSize, (uint)(note.Length - 24))).TrimEnd('\0');
    }

    private static byte[]? TryTrim(byte[] buffer)
    {
        uint nameSize = BinaryPrimitives.ReadUInt32LittleEndian(buffer);
        uint descSize = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(4));
        if (nameSize != 11 || !buffer.AsSpan(12, 11).SequenceEqual(s_name) || descSize > buffer.Length - 24)
        {
            return null;
        }

        return buffer.AsSpan(0, 24 + (int)((descSize + 3) & ~3u)).ToArray();
    }

    /// <summary>
    /// Searches RAM in address order for the first encoded VMCOREINFO note: in every 1 MiB window memory does not know
    /// to be zero or, with <paramref name="candidatePages"/>, only around those pages.
    /// </summary>
    private static (byte[], ulong)? ScanRam(IPhysicalMemory memory, IReadOnlyList<ulong>? candidatePages)
    {
        const int Chunk = 1 << 20;

        // Candidate windows are at most four pages (CandidateWindows): a buffer of that size, not of a whole window,
        // keeps a short run (a small stream) from allocating 1 MiB on the large object heap, which starts a GC.
        byte[] buffer = new byte[candidatePages is null ? Chunk + 64 : CandidateWindowPages * 4096];
        foreach ((ulong start, int length, int searched) in candidatePages is null ? Windows(memory, Chunk, buffer.Length) : CandidateWindows(memory, candidatePages))
        {
            int n = memory.Read(start, buffer.AsSpan(0, length));
            if (FindIn(memory, buffer.AsSpan(0, n), start, searched) is (byte[], ulong) found)
            {
                return found;
            }
        }

        return null;
    }

    /// <summary>Every range in 1 MiB windows (read 64 bytes further, so a note across two windows is seen whole).</summary>
    private static IEnumerable<(ulong Start, int Length, int Searched)> Windows(IPhysicalMemory memory, int chunk, int read)
    {
        ISparseMemory? sparse = memory as ISparseMemory;
        foreach (MemoryRange r in memory.Ranges)
        {
            for (ulong a = r.Start; a < r.End; a += (ulong)chunk)
            {
                int length = (int)Math.Min((ulong)read, r.End - a);

                // A window the memory knows is all zero cannot hold the note: skip it unread (a large guest with
                // little touched memory is mostly such windows).
                if (sparse is null || !sparse.IsZero(a, (ulong)length))
                {
                    yield return (a, length, chunk);
                }
            }
        }
    }

    /// <summary>
    /// The page before, the page of and the two pages after each candidate (<see cref="CandidateWindowPages"/> pages
    /// at most) (the page where a note's name starts), in
    /// address order: the header is 12 bytes before the name and "OSRELEASE=" follows it, so a note whose name starts in
    /// a candidate page lies in that window.
    /// </summary>
    private static IEnumerable<(ulong Start, int Length, int Searched)> CandidateWindows(IPhysicalMemory memory, IReadOnlyList<ulong> pages)
    {
        const ulong Page = 4096;
        foreach (ulong page in pages.Select(p => p & ~(Page - 1)).Distinct().Order())
        {
            int ri = memory.Ranges.FindRange(page);
            if (ri < 0)
            {
                continue;
            }

            MemoryRange r = memory.Ranges[ri];
            ulong start = Math.Max(r.Start, page >= Page ? page - Page : 0);
            ulong end = Math.Min(r.End, page + ((CandidateWindowPages - 1) * Page));
            yield return (start, (int)(end - start), (int)(end - start));
        }
    }

    /// <summary>The first note whose name starts in <c>span[..searched]</c> (<paramref name="address"/> is span[0]'s).</summary>
    private static (byte[], ulong)? FindIn(IPhysicalMemory memory, ReadOnlySpan<byte> span, ulong address, int searched)
    {
        int from = 0;
        while (true)
        {
            int i = span[from..].IndexOf(s_name);
            if (i < 0)
            {
                return null;
            }

            int at = from + i;
            from = at + 1;
            if (at < 12 || at - 12 >= searched)
            {
                continue;
            }

            ReadOnlySpan<byte> header = span[(at - 12)..];
            if (BinaryPrimitives.ReadUInt32LittleEndian(header) != 11 || BinaryPrimitives.ReadUInt32LittleEndian(header[8..]) != 0
                || !span[(at + 12)..].StartsWith("OSRELEASE="u8))
            {
                continue;
            }

            uint descSize = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
            if (descSize is 0 or > MaxNoteSize)
            {
                continue;
            }

            byte[] note = new byte[24 + ((descSize + 3) & ~3u)];
            ulong noteAddress = address + (ulong)at - 12;
            if (memory.Read(noteAddress, note) == note.Length)
            {
                return (note, noteAddress);
            }
        }
    }
}
