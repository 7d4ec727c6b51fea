namespace VmState.Linux;

/// <summary>
/// VMA iteration named after the kernel's <c>for_each_vma</c> (Linux <c>include/linux/mm.h</c>; drgn's
/// <c>for_each_vma</c> in <c>drgn/helpers/linux/mm.py</c>): the maple tree <c>mm->mm_mt</c> of Linux 6.1+, else
/// the older <c>mm->mmap</c> list linked through <c>vm_next</c>. Both walks are bounded, every VMA of the tree must
/// span exactly the range the tree stores it for, and the count must match <c>mm->map_count</c>.
/// </summary>
public static class KernelVmas
{
    private const int MaxVmas = 1 << 20;         // far above vm.max_map_count (65530 by default)
    private const string TreeName = "maple tree (mm->mm_mt)";

    /// <summary><c>for_each_vma</c>: the <c>struct vm_area_struct</c>s of the <c>struct mm_struct</c> <paramref name="mm"/>, in address order.</summary>
    /// <exception cref="KernelDataException">A corrupt tree or list, a count that differs from <c>map_count</c>, or unreadable memory.</exception>
    public static IReadOnlyList<KernelObject> ForEachVma(this LinuxKernel kernel, KernelObject mm)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(mm);
        int mmType = kernel.Types.FindType("struct mm_struct");
        bool maple = kernel.Types.FindMember(mmType, "mm_mt") is not null;
        List<ulong> vmas = maple ? MapleEntries(kernel, mm.Member("mm_mt")) : ListEntries(kernel, mm);
        long mapCount = mm.Member("map_count").ToInt64();
        if (vmas.Count != mapCount)
        {
            throw new KernelDataException(mm.Address, "VMAs of mm_struct", $"the {(maple ? "maple tree" : "mmap list")} holds {vmas.Count} VMAs but map_count is {mapCount}");
        }

        var result = new List<KernelObject>(vmas.Count);
        foreach (ulong v in vmas)
        {
            result.Add(kernel.ObjectAt(v, "struct vm_area_struct"));
        }

        return result;
    }

    /// <summary>
    /// The VMA pointers stored in the maple tree (<c>mt_for_each</c>), each checked against the range the tree
    /// gives it (a VMA spans [pivot of the previous slot + 1, its own pivot]).
    /// </summary>
    private static List<ulong> MapleEntries(LinuxKernel kernel, KernelObject tree)
    {
        IEnumerable<MapleTreeEntry> entries = kernel.MtForEach(tree, TreeName, MaxVmas);
        var b = kernel.Types;
        int vmaType = b.FindType("struct vm_area_struct");
        ulong startOff = b.Member(vmaType, "vm_start").ByteOffset;
        ulong endOff = b.Member(vmaType, "vm_end").ByteOffset;
        var found = new List<ulong>();
        foreach (MapleTreeEntry e in entries)
        {
            // A root that is a single entry (for index 0) is no layout a process can have; it is taken as the tree says, unchecked.
            bool rootEntry = e.First == 0 && e.Last == 0 && found.Count == 0 && !MapleTree.XaIsNode(tree.Member("ma_root").ToUInt64());
            if (!rootEntry)
            {
                ulong vmStart = kernel.ReadU64(e.Entry + startOff, "vm_area_struct.vm_start");
                ulong vmEnd = kernel.ReadU64(e.Entry + endOff, "vm_area_struct.vm_end");
                if (vmStart != e.First || vmEnd - 1 != e.Last)
                {
                    throw new KernelDataException(e.Entry, TreeName, $"the VMA in range 0x{e.First:x}-0x{e.Last:x} says 0x{vmStart:x}-0x{vmEnd:x}");
                }
            }

            found.Add(e.Entry);
        }

        return found;
    }

    /// <summary>Before 6.1: <c>mm->mmap</c> and <c>vm_next</c>, bounded by <c>map_count</c>.</summary>
    private static List<ulong> ListEntries(LinuxKernel kernel, KernelObject mm)
    {
        long mapCount = mm.Member("map_count").ToInt64();
        var found = new List<ulong>();
        KernelObject vma = mm.Member("mmap");
        var seen = new HashSet<ulong>();
        while (!vma.IsNull)
        {
            ulong a = vma.ToUInt64();
            if (!seen.Add(a) || found.Count > Math.Min(mapCount, MaxVmas))
            {
                throw new KernelDataException(a, "VMA list (mm->mmap)", $"more entries than map_count {mapCount}, or a loop");
            }

            found.Add(a);
            vma = vma.Member("vm_next");
        }

        return found;
    }
}
