using System.Buffers.Binary;

namespace VmState.Linux;

/// <summary>
/// The maple tree of Linux 6.1+ (<c>lib/maple_tree.c</c>, <c>include/linux/maple_tree.h</c>), read the way
/// <c>mt_for_each</c> walks it: the node types a process's VMA tree (<c>mm->mm_mt</c>, a tree of allocation ranges)
/// uses — <c>maple_leaf_64</c>, <c>maple_range_64</c>, <c>maple_arange_64</c> — with pivots, slots and the metadata
/// end byte placed by the guest's BTF. Error messages speak of VMAs, the entries of such a tree. The walk is bounded and detects a node reached twice, so a corrupt tree ends with a
/// <see cref="KernelDataException"/> instead of a hang.
/// </summary>
public static class MapleTree
{
    /// <summary>Default cap on entries walked (far above vm.max_map_count, 65530 by default).</summary>
    public const int DefaultMaxEntries = 1 << 20;

    private const ulong MapleNodeMask = 0xff;     // MAPLE_NODE_MASK
    private const int MapleNodeTypeShift = 3;     // MAPLE_NODE_TYPE_SHIFT
    private const int MapleDense = 0;             // enum maple_type
    private const int MapleLeaf64 = 1;
    private const int MapleRange64 = 2;
    private const int MapleArange64 = 3;
    private const int MaxDepth = 64;

    /// <summary>
    /// <c>mt_for_each</c>: the non-NULL entries of the <c>struct maple_tree</c> <paramref name="tree"/> in index
    /// order, each with the range the tree gives it (a slot spans [pivot of the previous slot + 1, its own pivot]).
    /// Internal entries of a leaf (<c>XA_ZERO_ENTRY</c>, reserved values) are skipped. The node layouts and the root
    /// are read when this is called; the nodes as the result is enumerated.
    /// </summary>
    /// <param name="kernel">The kernel whose memory holds the tree.</param>
    /// <param name="tree">A <c>struct maple_tree</c> object (e.g. <c>mm->mm_mt</c>).</param>
    /// <param name="what">What the tree is, for error messages.</param>
    /// <param name="maxEntries">Most entries accepted before the tree is declared corrupt.</param>
    /// <exception cref="KernelDataException">A node reached twice, a node type such a tree does not use, an internal slot that is not an encoded node, more than <paramref name="maxEntries"/> entries, or unreadable memory.</exception>
    public static IEnumerable<MapleTreeEntry> MtForEach(this LinuxKernel kernel, KernelObject tree, string what = "maple tree", int maxEntries = DefaultMaxEntries)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(tree);
        ArgumentNullException.ThrowIfNull(what);
        var b = kernel.Types;
        int r64 = b.FindType("struct maple_range_64");
        int a64 = b.FindType("struct maple_arange_64");
        var layouts = new Dictionary<int, NodeLayout>
        {
            [MapleLeaf64] = NodeLayout.Of(kernel, r64, "meta.end"),
            [MapleRange64] = NodeLayout.Of(kernel, r64, "meta.end"),
            [MapleArange64] = NodeLayout.Of(kernel, a64, "meta.end"),
        };
        ulong root = tree.Member("ma_root").ToUInt64();
        return Walk(kernel, root, layouts, what, maxEntries);
    }

    /// <summary>
    /// <c>xa_is_node()</c>: an internal entry (low bits 10) above 4096, which is what <c>ma_root</c> holds when the tree
    /// has nodes; any other non-zero root is the tree's single entry, for index 0.
    /// </summary>
    public static bool XaIsNode(ulong entry) => (entry & 3) == 2 && entry > 4096;

    private static IEnumerable<MapleTreeEntry> Walk(LinuxKernel kernel, ulong root, Dictionary<int, NodeLayout> layouts, string what, int maxEntries)
    {
        if (root == 0)
        {
            yield break;
        }

        if (!XaIsNode(root))
        {
            // A single entry for index 0 only: not a VMA layout a process can have, but read it as the tree says.
            yield return new MapleTreeEntry(0, 0, root);
            yield break;
        }

        var visited = new HashSet<ulong>();
        var stack = new Stack<(ulong Entry, ulong Min, ulong Max, int Depth)>();
        stack.Push((root, 0, ulong.MaxValue, 0));
        byte[] node = new byte[256];
        int found = 0;
        while (stack.Count > 0)
        {
            (ulong entry, ulong min, ulong max, int depth) = stack.Pop();
            ulong address = entry & ~MapleNodeMask;
            int type = (int)((entry >> MapleNodeTypeShift) & 0xf);
            if (!visited.Add(address) || depth > MaxDepth)
            {
                throw new KernelDataException(address, what, "a node is reached twice (the tree loops)");
            }

            if (!layouts.TryGetValue(type, out NodeLayout? layout))
            {
                throw new KernelDataException(address, what, $"node type {type} is not one a process's VMA tree uses ({(type == MapleDense ? "dense" : "unknown")})");
            }

            kernel.ReadExactly(address, node.AsSpan(0, layout.Size), "maple tree node");
            int end = layout.DataEnd(node, type == MapleArange64, max);
            bool leaf = type == MapleLeaf64;
            ulong slotMin = min;
            var children = new List<(ulong, ulong, ulong, int)>();
            for (int i = 0; i <= end; i++)
            {
                ulong slotMax = i < layout.Pivots ? layout.Pivot(node, i) : max;
                if (i > 0 && i < layout.Pivots && slotMax == 0)
                {
                    break; // past the used pivots
                }

                ulong slot = layout.Slot(node, i);
                if (slot != 0)
                {
                    if (leaf)
                    {
                        if ((slot & 3) != 2)
                        {
                            // An entry; internal entries (XA_ZERO_ENTRY, reserved values) are skipped.
                            yield return new MapleTreeEntry(slotMin, slotMax, slot);
                            if (++found > maxEntries)
                            {
                                throw new KernelDataException(address, what, $"more than {maxEntries} VMAs");
                            }
                        }
                    }
                    else
                    {
                        // Below the root, a child is the node address with its type in bits 3-6 and bit 2 set
                        // (mt_mk_node: node | type << MAPLE_ENODE_TYPE_SHIFT | MAPLE_ENODE_NULL); only the root
                        // pointer carries the xarray "internal" bits (xa_mk_node).
                        if ((slot & MapleNodeMask & ~0x7cUL) != 0 || slot < 4096)
                        {
                            throw new KernelDataException(address, what, $"slot {i} of an internal node holds 0x{slot:x}, not an encoded node");
                        }

                        children.Add((slot, slotMin, slotMax, depth + 1));
                    }
                }

                if (slotMax == ulong.MaxValue)
                {
                    break;
                }

                slotMin = slotMax + 1;
            }

            // Children pushed in reverse so the walk visits them (and so the entries) in index order.
            for (int i = children.Count - 1; i >= 0; i--)
            {
                stack.Push(children[i]);
            }
        }
    }

    /// <summary>Where pivots, slots and the metadata end byte sit in a maple node type (from BTF).</summary>
    private sealed class NodeLayout
    {
        private int _pivotOffset;
        private int _slotOffset;
        private int _endOffset;

        public int Size { get; private init; }

        public int Pivots { get; private init; }

        public static NodeLayout Of(LinuxKernel kernel, int typeId, string endPath)
        {
            var t = kernel.Types;
            int pivotType = t.Member(typeId, "pivot").TypeId;
            int slotType = t.Member(typeId, "slot").TypeId;
            return new NodeLayout
            {
                Size = (int)t.SizeOf(typeId),
                Pivots = (int)t.Resolve(pivotType).ArrayInfo!.Value.Length,
                _pivotOffset = (int)t.Member(typeId, "pivot").ByteOffset,
                _slotOffset = (int)t.Member(typeId, "slot").ByteOffset,
                _endOffset = (int)t.Member(typeId, endPath).ByteOffset,
            }.Check(t.Resolve(slotType).ArrayInfo!.Value.Length);
        }

        public ulong Pivot(byte[] node, int i) => BinaryPrimitives.ReadUInt64LittleEndian(node.AsSpan(_pivotOffset + (8 * i)));

        public ulong Slot(byte[] node, int i) => BinaryPrimitives.ReadUInt64LittleEndian(node.AsSpan(_slotOffset + (8 * i)));

        /// <summary>ma_data_end(): the last used slot.</summary>
        public int DataEnd(byte[] node, bool arange, ulong max)
        {
            int end;
            if (arange || Pivot(node, Pivots - 1) == 0)
            {
                end = node[_endOffset];
            }
            else
            {
                end = Pivot(node, Pivots - 1) == max ? Pivots - 1 : Pivots;
            }

            return Math.Min(end, Pivots);
        }

        private NodeLayout Check(uint slots)
        {
            if (slots != Pivots + 1 || _slotOffset + (8 * (int)slots) > Size + 8)
            {
                throw new KernelDataException("maple tree", $"node layout with {Pivots} pivots and {slots} slots is not the expected pivots + 1");
            }

            return this;
        }
    }
}
