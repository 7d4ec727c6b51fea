using VmState.Linux;

namespace VmState.Tests.Linux;

/// <summary>
/// <see cref="MapleTree.MtForEach"/> over maple nodes planted in the synthetic kernel's memory, laid out as Linux 6.1
/// declares them (<c>include/linux/maple_tree.h</c>): an arange_64 root over two leaf_64 nodes.
/// </summary>
public sealed class MapleTreeTests
{
    // maple_enode encodings (lib/maple_tree.c mt_mk_node, xa_mk_node): type in bits 3-6, bit 2 below the root, bits 1 at the root.
    private const ulong Leaf64 = 1, Arange64 = 3;
    private const ulong NodesPa = 0x7000000;

    private static readonly Action<BtfWriter> s_mapleTypes = w =>
    {
        int i32 = w.Int("int", 4, signed: true);
        int u32 = w.Int("unsigned int", 4);
        int ul = w.Int("long unsigned int", 8);
        int uc = w.Int("unsigned char", 1);
        int voidP = w.Ptr(0);
        int meta = w.Struct("maple_metadata", 2, ("end", uc, 0, 0), ("gap", uc, 8, 0));

        // struct maple_range_64: the metadata shares the last slot (a union with an anonymous struct).
        int padMeta = w.Struct(string.Empty, 128, ("pad", w.Array(voidP, i32, 15), 0, 0), ("meta", meta, 120 * 8, 0));
        int slots = w.Union(string.Empty, 128, ("slot", w.Array(voidP, i32, 16), 0, 0), (string.Empty, padMeta, 0, 0));
        w.Struct("maple_range_64", 256, ("parent", voidP, 0, 0), ("pivot", w.Array(ul, i32, 15), 64, 0), (string.Empty, slots, 128 * 8, 0));
        w.Struct("maple_arange_64", 248, ("parent", voidP, 0, 0), ("pivot", w.Array(ul, i32, 9), 64, 0), ("slot", w.Array(voidP, i32, 10), 80 * 8, 0),
            ("gap", w.Array(ul, i32, 10), 160 * 8, 0), ("meta", meta, 240 * 8, 0));
        w.Struct("maple_tree", 16, ("ma_lock", u32, 0, 0), ("ma_flags", u32, 32, 0), ("ma_root", voidP, 64, 0));
    };

    private sealed class Tree
    {
        public Tree()
        {
            Linux = new SyntheticLinux(moreTypes: s_mapleTypes);
            Kernel = KernelLocator.Locate(Linux.Machine);
        }

        public SyntheticLinux Linux { get; }

        public LinuxKernel Kernel { get; }

        public ulong Va(ulong offset) => Linux.PageOffsetBase + NodesPa + offset;

        /// <summary>A range_64/leaf_64 node: (pivot, slot) pairs and the metadata end byte.</summary>
        public void Range64(ulong node, (ulong Pivot, ulong Slot)[] entries)
        {
            for (int i = 0; i < entries.Length; i++)
            {
                if (i < 15)
                {
                    Linux.WriteU64(node + 8 + (8 * (ulong)i), entries[i].Pivot);
                }

                Linux.WriteU64(node + 128 + (8 * (ulong)i), entries[i].Slot);
            }

            Linux.WriteVirtual(node + 248, [(byte)(entries.Length - 1)]);
        }

        public void Arange64(ulong node, (ulong Pivot, ulong Slot)[] entries)
        {
            for (int i = 0; i < entries.Length; i++)
            {
                if (i < 9)
                {
                    Linux.WriteU64(node + 8 + (8 * (ulong)i), entries[i].Pivot);
                }

                Linux.WriteU64(node + 80 + (8 * (ulong)i), entries[i].Slot);
            }

            Linux.WriteVirtual(node + 240, [(byte)(entries.Length - 1)]);
        }

        public KernelObject Root(ulong rootEntry)
        {
            ulong tree = Va(0);
            Linux.WriteU64(tree + 8, rootEntry);
            return Kernel.ObjectAt(tree, "struct maple_tree");
        }
    }

    private static ulong Child(ulong node, ulong type) => node | (type << 3) | 4;

    private static ulong RootOf(ulong node, ulong type) => node | (type << 3) | 2;

    /// <summary>The two-level tree of the tests; returns (tree, root node, leaf 0, leaf 1, the entries planted).</summary>
    private static (Tree T, ulong Root, ulong Leaf0, ulong Leaf1, ulong[] Vmas) TwoLevels()
    {
        var t = new Tree();
        ulong root = t.Va(0x1000), leaf0 = t.Va(0x1100), leaf1 = t.Va(0x1200);
        ulong[] vmas = [t.Va(0x2000), t.Va(0x2100), t.Va(0x2200)];
        t.Arange64(root, [(0x7fffffff, Child(leaf0, Leaf64)), (ulong.MaxValue, Child(leaf1, Leaf64))]);

        // A gap, a VMA, an XA_ZERO_ENTRY (xa_mk_internal(257): skipped), a VMA, the gap up to the node's end.
        t.Range64(leaf0, [(0x3fffff, 0), (0x400fff, vmas[0]), (0x401fff, 0x406), (0x500fff, vmas[1]), (0x7fffffff, 0)]);
        t.Range64(leaf1, [(0x7ffd0fff, 0), (0x7ffd2fff, vmas[2]), (ulong.MaxValue, 0)]);
        return (t, root, leaf0, leaf1, vmas);
    }

    [Fact]
    public void EntriesComeInIndexOrderWithTheRangesTheTreeGivesThem()
    {
        (Tree t, ulong root, _, _, ulong[] vmas) = TwoLevels();

        MapleTreeEntry[] entries = [.. t.Kernel.MtForEach(t.Root(RootOf(root, Arange64)))];

        Assert.Equal(
            [new MapleTreeEntry(0x400000, 0x400fff, vmas[0]), new MapleTreeEntry(0x402000, 0x500fff, vmas[1]), new MapleTreeEntry(0x7ffd1000, 0x7ffd2fff, vmas[2])],
            entries);
    }

    [Fact]
    public void AnEmptyTreeAndASingleEntryRootNeedNoNodes()
    {
        var t = new Tree();

        Assert.Empty(t.Kernel.MtForEach(t.Root(0)));
        Assert.Equal([new MapleTreeEntry(0, 0, t.Va(0x2000))], t.Kernel.MtForEach(t.Root(t.Va(0x2000))));
    }

    [Fact]
    public void ALoopingTreeEndsWithAnErrorNamingTheNode()
    {
        (Tree t, ulong root, _, ulong leaf1, _) = TwoLevels();
        t.Arange64(root, [(0x7fffffff, Child(root, Arange64)), (ulong.MaxValue, Child(leaf1, Leaf64))]);

        KernelDataException e = Assert.Throws<KernelDataException>(() => t.Kernel.MtForEach(t.Root(RootOf(root, Arange64)), "test tree").ToList());

        Assert.Equal(root, e.Address);
        Assert.Equal("test tree", e.Structure);
        Assert.Contains("reached twice", e.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void AnInternalSlotThatIsNoEncodedNodeIsRefused()
    {
        (Tree t, ulong root, ulong leaf0, _, _) = TwoLevels();
        t.Arange64(root, [(0x7fffffff, Child(leaf0, Leaf64)), (ulong.MaxValue, 0x123)]);

        KernelDataException e = Assert.Throws<KernelDataException>(() => t.Kernel.MtForEach(t.Root(RootOf(root, Arange64))).ToList());

        Assert.Equal("slot 1 of an internal node holds 0x123, not an encoded node", e.Problem);
    }

    [Fact]
    public void ADenseNodeIsNotOneAVmaTreeUses()
    {
        (Tree t, ulong root, _, _, _) = TwoLevels();

        KernelDataException e = Assert.Throws<KernelDataException>(() => t.Kernel.MtForEach(t.Root(RootOf(root, 0))).ToList());

        Assert.Contains("node type 0", e.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void TheEntryCapEndsAWalkThatYieldsTooMany()
    {
        (Tree t, ulong root, _, _, _) = TwoLevels();

        KernelDataException e = Assert.Throws<KernelDataException>(() => t.Kernel.MtForEach(t.Root(RootOf(root, Arange64)), maxEntries: 2).ToList());

        Assert.Contains("more than 2", e.Problem, StringComparison.Ordinal);
    }
}
