using VmState.Linux;

namespace VmState.Tests.Linux;

/// <summary>
/// <see cref="XArray.XaForEach"/> over xa_nodes planted in the synthetic kernel's memory, laid out as Linux 6.1
/// declares them (<c>include/linux/xarray.h</c>): a root node of shift 6 over leaf nodes, value entries (evicted
/// pages' shadows), a multi-index entry with its sibling slots, and corrupt trees.
/// </summary>
public sealed class XArrayTests
{
    private const ulong NodesPa = 0x7000000;
    private const ulong ShiftAt = 0, OffsetAt = 1, ParentAt = 8, SlotsAt = 40, NodeSize = SlotsAt + (64 * 8);

    private static readonly Action<BtfWriter> s_xarrayTypes = w =>
    {
        int i32 = w.Int("int", 4, signed: true);
        int u32 = w.Int("unsigned int", 4);
        int uc = w.Int("unsigned char", 1);
        int voidP = w.Ptr(0);
        int slots = w.Array(voidP, i32, 64);
        int node = w.NextId;
        int nodePtr = node + 1;
        w.Struct("xa_node", (uint)NodeSize, ("shift", uc, 0, 0), ("offset", uc, 8, 0), ("count", uc, 16, 0), ("nr_values", uc, 24, 0),
            ("parent", nodePtr, (uint)ParentAt * 8, 0), ("array", voidP, 128, 0), ("slots", slots, (uint)SlotsAt * 8, 0));
        Assert.Equal(nodePtr, w.Ptr(node));
        w.Struct("xarray", 16, ("xa_lock", u32, 0, 0), ("xa_flags", u32, 32, 0), ("xa_head", voidP, 64, 0));
    };

    private sealed class Tree
    {
        public Tree()
        {
            Linux = new SyntheticLinux(moreTypes: s_xarrayTypes);
            Kernel = KernelLocator.Locate(Linux.Machine);
        }

        public SyntheticLinux Linux { get; }

        public LinuxKernel Kernel { get; }

        public ulong Va(ulong offset) => Linux.PageOffsetBase + NodesPa + offset;

        public void Node(ulong node, int shift, int offset, ulong parent, params (int Slot, ulong Entry)[] slots)
        {
            Linux.WriteVirtual(node + ShiftAt, [(byte)shift]);
            Linux.WriteVirtual(node + OffsetAt, [(byte)offset]);
            Linux.WriteU64(node + ParentAt, parent);
            foreach ((int slot, ulong entry) in slots)
            {
                Linux.WriteU64(node + SlotsAt + (8 * (ulong)slot), entry);
            }
        }

        public KernelObject Array(ulong head)
        {
            ulong xa = Va(0);
            Linux.WriteU64(xa + 8, head);
            return Kernel.ObjectAt(xa, "struct xarray");
        }
    }

    private static ulong NodeEntry(ulong node) => node | 2;

    private static ulong Sibling(int canonical) => ((ulong)canonical << 2) | 2;

    private static ulong ValueEntry(ulong v) => (v << 1) | 1;

    /// <summary>A root (shift 6) with leaves at slots 0 and 2: indexes 0-63 and 128-191.</summary>
    private static (Tree T, ulong Root, ulong Leaf0, ulong Leaf2, ulong[] Pages) TwoLevels()
    {
        var t = new Tree();
        ulong root = t.Va(0x1000), leaf0 = t.Va(0x2000), leaf2 = t.Va(0x3000);
        ulong[] pages = [t.Va(0x10000), t.Va(0x10040), t.Va(0x10080), t.Va(0x100c0)];
        t.Node(root, 6, 0, 0, (0, NodeEntry(leaf0)), (2, NodeEntry(leaf2)));

        // Page at 0, a shadow at 1, a retry entry at 2 (xa_mk_internal(256): skipped), a 4-page entry at 4-7, a page at 63.
        t.Node(leaf0, 0, 0, root, (0, pages[0]), (1, ValueEntry(0x1234)), (2, (256UL << 2) | 2), (4, pages[1]), (5, Sibling(4)), (6, Sibling(4)), (7, Sibling(4)), (63, pages[2]));
        t.Node(leaf2, 0, 2, root, (3, pages[3]));
        return (t, root, leaf0, leaf2, pages);
    }

    [Fact]
    public void EntriesComeInIndexOrderWithValueEntriesAndMultiIndexSpans()
    {
        (Tree t, ulong root, _, _, ulong[] pages) = TwoLevels();

        XArrayEntry[] entries = [.. t.Kernel.XaForEach(t.Array(NodeEntry(root)), 1000, "test array")];

        Assert.Equal(
            [new XArrayEntry(0, pages[0], 1), new XArrayEntry(1, ValueEntry(0x1234), 1), new XArrayEntry(4, pages[1], 4), new XArrayEntry(63, pages[2], 1), new XArrayEntry(131, pages[3], 1)],
            entries);
        Assert.True(entries[1].IsValue);
        Assert.Equal(0x1234UL, entries[1].Value);
        Assert.False(entries[0].IsValue);
    }

    [Fact]
    public void TheLimitLeavesOutHigherIndexes()
    {
        (Tree t, ulong root, _, _, ulong[] pages) = TwoLevels();

        Assert.Equal([new XArrayEntry(0, pages[0], 1), new XArrayEntry(1, ValueEntry(0x1234), 1)], t.Kernel.XaForEach(t.Array(NodeEntry(root)), 4, "test array"));
    }

    [Fact]
    public void AnEmptyArrayAndASingleEntryHeadNeedNoNodes()
    {
        var t = new Tree();

        Assert.Empty(t.Kernel.XaForEach(t.Array(0), 10, "test array"));
        Assert.Equal([new XArrayEntry(0, t.Va(0x10000), 1)], t.Kernel.XaForEach(t.Array(t.Va(0x10000)), 10, "test array"));
    }

    [Fact]
    public void ANodeThatNamesAnotherParentIsRefused()
    {
        (Tree t, ulong root, _, ulong leaf2, _) = TwoLevels();
        t.Node(leaf2, 0, 2, t.Va(0x5000));

        KernelDataException e = Assert.Throws<KernelDataException>(() => t.Kernel.XaForEach(t.Array(NodeEntry(root)), 1000, "test array"));

        Assert.Equal(leaf2, e.Address);
        Assert.Equal("test array", e.Structure);
        Assert.Contains("parent", e.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void ALoopingTreeIsRefusedAtTheNodeThatLoops()
    {
        (Tree t, ulong root, ulong leaf0, _, _) = TwoLevels();

        // The root names itself as its own child at slot 1: its shift (6) is not the 0 a child of shift 6 has.
        t.Node(root, 6, 0, 0, (0, NodeEntry(leaf0)), (1, NodeEntry(root)));

        KernelDataException e = Assert.Throws<KernelDataException>(() => t.Kernel.XaForEach(t.Array(NodeEntry(root)), 1000, "test array"));

        Assert.Equal(root, e.Address);
        Assert.Contains("shift 6", e.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void ANodeBelowTheLeafLevelIsRefused()
    {
        (Tree t, ulong root, ulong leaf0, _, _) = TwoLevels();
        t.Node(leaf0, 0, 0, root, (9, NodeEntry(t.Va(0x4000))));

        KernelDataException e = Assert.Throws<KernelDataException>(() => t.Kernel.XaForEach(t.Array(NodeEntry(root)), 1000, "test array"));

        Assert.Contains("below the leaf level", e.Problem, StringComparison.Ordinal);
    }
}
