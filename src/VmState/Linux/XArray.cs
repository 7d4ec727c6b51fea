using System.Buffers.Binary;

namespace VmState.Linux;

/// <summary>One present entry of an xarray, as <see cref="XArray.XaForEach"/> finds it.</summary>
/// <param name="Index">The first index the entry is stored at.</param>
/// <param name="Entry">The entry: a pointer, or a value entry (<see cref="IsValue"/>).</param>
/// <param name="Count">How many indexes it covers from <paramref name="Index"/> (more than 1 for a multi-index entry, e.g. a large folio).</param>
public readonly record struct XArrayEntry(long Index, ulong Entry, long Count)
{
    /// <summary>A value entry (<c>xa_is_value</c>: bit 0 set), e.g. the shadow the page cache leaves for an evicted page.</summary>
    public bool IsValue => (Entry & 1) != 0;

    /// <summary>The integer of a value entry (<c>xa_to_value</c>).</summary>
    public ulong Value => Entry >> 1;
}

/// <summary>
/// The kernel's xarray (<c>include/linux/xarray.h</c>, <c>lib/xarray.c</c>; drgn's <c>xa_for_each</c>): a radix tree
/// of <c>struct xa_node</c>s of XA_CHUNK_SIZE slots, each level consuming XA_CHUNK_SHIFT bits of the index. Entries
/// with low bits 10 are internal: node pointers (above 4096), sibling entries (the canonical slot of a multi-index
/// entry) and the retry and zero entries. The walk is bounded (nodes, and indexes below a limit), and every node must
/// name its parent, its slot in it and the shift one level below its parent's, so a corrupt or looping tree is an
/// error naming the node rather than a wrong answer.
/// </summary>
public static class XArray
{
    /// <summary>The most nodes one walk visits (a tree of 4 million nodes indexes 2^28 pages: 1 TiB of file).</summary>
    public const int MaxNodes = 1 << 22;

    /// <summary>
    /// <c>xa_for_each</c>: the present entries of the <c>struct xarray</c> <paramref name="xarray"/> with an index below
    /// <paramref name="limit"/>, in index order (pointers and value entries; internal entries are skipped).
    /// </summary>
    /// <param name="kernel">The kernel whose memory holds the tree.</param>
    /// <param name="xarray">A <c>struct xarray</c> (or a pointer to one).</param>
    /// <param name="limit">Indexes at or above this are not visited.</param>
    /// <param name="what">What the tree is, for messages (e.g. "page cache of /bin/sh").</param>
    /// <exception cref="KernelDataException">A corrupt or looping tree, or unreadable memory.</exception>
    public static IEnumerable<XArrayEntry> XaForEach(this LinuxKernel kernel, KernelObject xarray, long limit, string what)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(xarray);
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        var types = kernel.Types;
        int nodeType = types.FindType("struct xa_node");
        var layout = new NodeLayout(
            types.Member(nodeType, "shift").ByteOffset,
            types.Member(nodeType, "offset").ByteOffset,
            types.Member(nodeType, "parent").ByteOffset,
            types.Member(nodeType, "slots").ByteOffset,
            ChunkShift(kernel, nodeType));
        ulong head = xarray.Member("xa_head").ToUInt64();
        var found = new List<XArrayEntry>();
        if (head == 0 || limit == 0)
        {
            return found;
        }

        if (IsNode(head))
        {
            int nodes = 0;
            Visit(kernel, layout, head - 2, 0, 0, 0, -1, limit, what, found, ref nodes);
        }
        else if (!IsInternal(head))
        {
            found.Add(new XArrayEntry(0, head, 1));   // a single entry, for index 0
        }

        return found;
    }

    private readonly record struct NodeLayout(ulong Shift, ulong Offset, ulong Parent, ulong Slots, int ChunkShift)
    {
        public int ChunkSize => 1 << ChunkShift;
    }

    private static void Visit(LinuxKernel kernel, NodeLayout layout, ulong node, long first, ulong expectedParent, int expectedOffset, int expectedShift,
        long limit, string what, List<XArrayEntry> found, ref int nodes)
    {
        if (++nodes > MaxNodes)
        {
            throw new KernelDataException(node, what, $"more than {MaxNodes} xarray nodes (a loop or a corrupt tree)");
        }

        Span<byte> b = stackalloc byte[1];
        kernel.ReadExactly(node + layout.Shift, b, "xa_node.shift");
        int shift = b[0];
        kernel.ReadExactly(node + layout.Offset, b, "xa_node.offset");
        int offset = b[0];
        ulong parent = kernel.ReadU64(node + layout.Parent, "xa_node.parent");
        bool shiftOk = shift % layout.ChunkShift == 0 && shift <= 63 - layout.ChunkShift && (expectedShift < 0 || shift == expectedShift);
        if (!shiftOk || parent != expectedParent || (expectedParent != 0 && offset != expectedOffset))
        {
            throw new KernelDataException(node, what,
                $"xa_node has shift {shift}, offset {offset} and parent 0x{parent:x} where {(expectedShift < 0 ? "a multiple of " + layout.ChunkShift : expectedShift.ToString(System.Globalization.CultureInfo.InvariantCulture))}, {expectedOffset} and 0x{expectedParent:x} belong");
        }

        byte[] slots = new byte[layout.ChunkSize * 8];
        kernel.ReadExactly(node + layout.Slots, slots, "xa_node.slots");
        for (int i = 0; i < layout.ChunkSize; i++)
        {
            ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(slots.AsSpan(i * 8));
            long index = first + ((long)i << shift);
            if (entry == 0 || index >= limit || index < first)
            {
                continue;
            }

            if (IsNode(entry))
            {
                if (shift == 0)
                {
                    throw new KernelDataException(node, what, $"xa_node slot {i} holds a node below the leaf level");
                }

                Visit(kernel, layout, entry - 2, index, node, i, shift - layout.ChunkShift, limit, what, found, ref nodes);
            }
            else if (!IsInternal(entry))
            {
                // A (possibly multi-index) entry: the slots after it that name it as their sibling belong to it.
                int span = 1;
                while (i + span < layout.ChunkSize && IsSiblingOf(BinaryPrimitives.ReadUInt64LittleEndian(slots.AsSpan((i + span) * 8)), i))
                {
                    span++;
                }

                found.Add(new XArrayEntry(index, entry, (long)span << shift));
            }

            // Sibling, retry and zero entries carry nothing of their own.
        }
    }

    private static bool IsInternal(ulong entry) => (entry & 3) == 2;

    /// <summary><c>xa_is_node</c>: an internal entry above 4096 is a node pointer plus 2.</summary>
    private static bool IsNode(ulong entry) => IsInternal(entry) && entry > 4096;

    /// <summary><c>xa_mk_sibling(offset)</c>: the internal entry naming the canonical slot of a multi-index entry.</summary>
    private static bool IsSiblingOf(ulong entry, int canonical) => IsInternal(entry) && entry >> 2 == (ulong)canonical;

    /// <summary>XA_CHUNK_SHIFT from the length of <c>xa_node.slots</c> (6: 64 slots, or 4 with CONFIG_BASE_SMALL).</summary>
    private static int ChunkShift(LinuxKernel kernel, int nodeType)
    {
        var t = kernel.Types;
        ulong length = t.Resolve(t.Member(nodeType, "slots").TypeId).ArrayInfo?.Length ?? 0;
        return length switch
        {
            64 => 6,
            16 => 4,
            _ => throw new KernelDataException("struct xa_node", $"slots has {length} entries; 64 or 16 expected"),
        };
    }
}
