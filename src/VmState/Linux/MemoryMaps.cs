using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace VmState.Linux;

/// <summary>One virtual memory area of a process (a line of <c>/proc/PID/maps</c>).</summary>
/// <param name="Start">First address (<c>vm_start</c>).</param>
/// <param name="End">One past the last address (<c>vm_end</c>).</param>
/// <param name="Flags">The raw <c>vm_flags</c>.</param>
/// <param name="Offset">File offset in bytes (<c>vm_pgoff</c> × 4096) for a file mapping, else 0.</param>
/// <param name="Major">Device major number of the mapped file's filesystem.</param>
/// <param name="Minor">Device minor number.</param>
/// <param name="Inode">Inode number of the mapped file, 0 for anonymous memory.</param>
/// <param name="Name">The file's path, a bracketed name (<c>[heap]</c>, <c>[stack]</c>, <c>[vdso]</c>, <c>[anon:NAME]</c>) or empty.</param>
/// <param name="Address">Address of the <c>struct vm_area_struct</c>.</param>
/// <param name="File">Address of the mapped <c>struct file</c>, 0 for none.</param>
public sealed record LinuxVma(ulong Start, ulong End, ulong Flags, ulong Offset, uint Major, uint Minor, ulong Inode, string Name, ulong Address, ulong File)
{
    /// <summary>The VMA's <c>anon_vma</c>: non-zero once anonymous pages were faulted into it (written to).</summary>
    public ulong AnonVma { get; init; }

    /// <summary>VM_READ.</summary>
    public bool Readable => (Flags & 0x1) != 0;

    /// <summary>VM_WRITE.</summary>
    public bool Writable => (Flags & 0x2) != 0;

    /// <summary>VM_EXEC.</summary>
    public bool Executable => (Flags & 0x4) != 0;

    /// <summary>VM_MAYSHARE: shown as 's' (else 'p', private).</summary>
    public bool Shared => (Flags & 0x80) != 0;

    /// <summary>The permission column: <c>r-xp</c>.</summary>
    public string Permissions => string.Concat(Readable ? "r" : "-", Writable ? "w" : "-", Executable ? "x" : "-", Shared ? "s" : "p");

    /// <summary>The line exactly as <c>/proc/PID/maps</c> prints it (<c>show_map_vma</c>: the name padded to column 73).</summary>
    public string Format()
    {
        string head = string.Create(CultureInfo.InvariantCulture, $"{Start:x8}-{End:x8} {Permissions} {Offset:x8} {Major:x2}:{Minor:x2} {Inode} ");
        if (Name.Length == 0)
        {
            return head;
        }

        const int NameColumn = 25 + (8 * 6) - 1; // seq_setwidth(m, 25 + sizeof(void *) * 6 - 1), then seq_pad(m, ' ')
        return string.Concat(head.PadRight(NameColumn), " ", Name);
    }
}

/// <summary>
/// The memory maps of a process (<c>vmstate maps PID</c>, <c>/proc/PID/maps</c>): the VMAs of its <c>mm</c>, read
/// from the maple tree of Linux 6.1+ (<c>mm->mm_mt</c>, <c>lib/maple_tree.c</c>) or from the older
/// <c>mm->mmap</c> list (<c>vm_next</c>), with names as <c>show_map_vma</c> gives them (file paths built like
/// <c>d_path</c>, through mount points).
/// </summary>
public static class MemoryMaps
{
    private const int MaxVmas = 1 << 20;         // far above vm.max_map_count (65530 by default)
    private const int MaxPathDepth = 4096;
    private const ulong MapleNodeMask = 0xff;     // MAPLE_NODE_MASK
    private const int MapleNodeTypeShift = 3;     // MAPLE_NODE_TYPE_SHIFT
    private const int MapleDense = 0;             // enum maple_type
    private const int MapleLeaf64 = 1;
    private const int MapleRange64 = 2;
    private const int MapleArange64 = 3;

    /// <summary>The VMAs of process <paramref name="pid"/>, sorted by address.</summary>
    /// <exception cref="KernelDataException">No such process, a kernel thread (no mm), or a corrupt tree or list.</exception>
    public static IReadOnlyList<LinuxVma> Read(LinuxKernel kernel, int pid)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        return Read(kernel, UserMm(FindTask(kernel, pid)));
    }

    /// <summary>The VMAs of the <c>struct mm_struct</c> <paramref name="mm"/>, sorted by address.</summary>
    /// <exception cref="KernelDataException">A corrupt tree or list, or unreadable memory.</exception>
    public static IReadOnlyList<LinuxVma> Read(LinuxKernel kernel, KernelObject mm)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(mm);
        int mmType = kernel.Types.FindType("struct mm_struct");
        List<ulong> vmas = kernel.Types.FindMember(mmType, "mm_mt") is not null
            ? MapleEntries(kernel, mm.Member("mm_mt"))
            : ListEntries(kernel, mm);
        long mapCount = mm.Member("map_count").ToInt64();
        if (vmas.Count != mapCount)
        {
            throw new KernelDataException(mm.Address, "VMAs of mm_struct", $"the {(kernel.Types.FindMember(mmType, "mm_mt") is not null ? "maple tree" : "mmap list")} holds {vmas.Count} VMAs but map_count is {mapCount}");
        }

        var context = new NameContext(kernel, mm);
        var result = new List<LinuxVma>(vmas.Count);
        foreach (ulong v in vmas)
        {
            result.Add(Describe(kernel, kernel.ObjectAt(v, "struct vm_area_struct"), context));
        }

        return result;
    }

    /// <summary>The <c>struct mm_struct</c> of a task (its user memory).</summary>
    /// <exception cref="KernelDataException">A kernel thread (no mm).</exception>
    public static KernelObject UserMm(KernelObject task)
    {
        ArgumentNullException.ThrowIfNull(task);
        KernelObject mm = task.Member("mm");
        if (mm.IsNull)
        {
            throw new KernelDataException(task.Address, $"task {task.Member("pid").ToInt64()} ({task.Member("comm").ReadString()})", "has no mm: a kernel thread has no user memory");
        }

        return mm.Deref();
    }

    /// <summary>The task with pid <paramref name="pid"/> (any thread; its thread group shares the mm).</summary>
    /// <exception cref="VmStateNotFoundException">No such task (<see cref="VmStateObjectKind.Process"/>).</exception>
    /// <exception cref="KernelDataException">A corrupt task list.</exception>
    public static KernelObject FindTask(LinuxKernel kernel, int pid)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        foreach (KernelObject t in kernel.ForEachTask())
        {
            if (t.Member("pid").ToInt64() == pid)
            {
                return t;
            }
        }

        throw new VmStateNotFoundException(VmStateObjectKind.Process, pid.ToString(System.Globalization.CultureInfo.InvariantCulture), $"task list: no task has pid {pid}");
    }

    /// <summary>
    /// The VMA pointers stored in the maple tree (<c>mt_for_each</c>), each checked against the range the tree
    /// gives it (a VMA spans [pivot of the previous slot + 1, its own pivot]).
    /// </summary>
    private static List<ulong> MapleEntries(LinuxKernel kernel, KernelObject tree)
    {
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
        var found = new List<ulong>();
        var vmaType = b.FindType("struct vm_area_struct");
        ulong startOff = b.Member(vmaType, "vm_start").ByteOffset;
        ulong endOff = b.Member(vmaType, "vm_end").ByteOffset;
        if (root == 0)
        {
            return found;
        }

        if (!IsNode(root))
        {
            // A single entry for index 0 only: not a VMA layout a process can have, but read it as the tree says.
            found.Add(root);
            return found;
        }

        var visited = new HashSet<ulong>();
        var stack = new Stack<(ulong Entry, ulong Min, ulong Max, int Depth)>();
        stack.Push((root, 0, ulong.MaxValue, 0));
        byte[] node = new byte[256];
        while (stack.Count > 0)
        {
            (ulong entry, ulong min, ulong max, int depth) = stack.Pop();
            ulong address = entry & ~MapleNodeMask;
            int type = (int)((entry >> MapleNodeTypeShift) & 0xf);
            if (!visited.Add(address) || depth > 64)
            {
                throw new KernelDataException(address, "maple tree (mm->mm_mt)", "a node is reached twice (the tree loops)");
            }

            if (!layouts.TryGetValue(type, out NodeLayout? layout))
            {
                throw new KernelDataException(address, "maple tree (mm->mm_mt)", $"node type {type} is not one a process's VMA tree uses ({(type == MapleDense ? "dense" : "unknown")})");
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
                            // A VMA pointer; internal entries (XA_ZERO_ENTRY, reserved values) are skipped.
                            ulong vmStart = kernel.ReadU64(slot + startOff, "vm_area_struct.vm_start");
                            ulong vmEnd = kernel.ReadU64(slot + endOff, "vm_area_struct.vm_end");
                            if (vmStart != slotMin || vmEnd - 1 != slotMax)
                            {
                                throw new KernelDataException(slot, "maple tree (mm->mm_mt)", $"the VMA in range 0x{slotMin:x}-0x{slotMax:x} says 0x{vmStart:x}-0x{vmEnd:x}");
                            }

                            found.Add(slot);
                            if (found.Count > MaxVmas)
                            {
                                throw new KernelDataException(address, "maple tree (mm->mm_mt)", $"more than {MaxVmas} VMAs");
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
                            throw new KernelDataException(address, "maple tree (mm->mm_mt)", $"slot {i} of an internal node holds 0x{slot:x}, not an encoded node");
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

            // Children pushed in reverse so the walk visits them (and so the VMAs) in address order.
            for (int i = children.Count - 1; i >= 0; i--)
            {
                stack.Push(children[i]);
            }
        }

        return found;
    }

    /// <summary>xa_is_node(): an internal entry (low bits 10) above 4096.</summary>
    private static bool IsNode(ulong entry) => (entry & 3) == 2 && entry > 4096;

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

    private static LinuxVma Describe(LinuxKernel kernel, KernelObject vma, NameContext context)
    {
        ulong start = vma.Member("vm_start").ToUInt64();
        ulong end = vma.Member("vm_end").ToUInt64();
        ulong flags = vma.Member("vm_flags").ToUInt64();
        KernelObject file = vma.Member("vm_file");
        ulong offset = 0;
        uint major = 0;
        uint minor = 0;
        ulong inode = 0;
        string name;
        if (!file.IsNull)
        {
            KernelObject ino = file.Member("f_inode");
            ulong dev = ino.Member("i_sb").Member("s_dev").ToUInt64();
            major = (uint)(dev >> 20);     // MINORBITS = 20 (include/linux/kdev_t.h)
            minor = (uint)(dev & 0xfffff);
            inode = ino.Member("i_ino").ToUInt64();
            offset = vma.Member("vm_pgoff").ToUInt64() << 12;
            name = FilePath(kernel, file.Member("f_path"));
        }
        else
        {
            name = AnonymousName(kernel, vma, start, end, context);
        }

        return new LinuxVma(start, end, flags, offset, major, minor, inode, name, vma.Address, file.IsNull ? 0 : file.ToUInt64())
        {
            AnonVma = context.HasAnonVma ? vma.Member("anon_vma").ToUInt64() : 1,
        };
    }

    /// <summary>show_map_vma's naming of a mapping without a file.</summary>
    private static string AnonymousName(LinuxKernel kernel, KernelObject vma, ulong start, ulong end, NameContext context)
    {
        KernelObject ops = vma.Member("vm_ops");
        if (!ops.IsNull)
        {
            ulong nameFn = ops.Member("name").ToUInt64();
            if (nameFn != 0)
            {
                // vm_ops->name(vma): special mappings ([vdso], [vvar]) keep the name in their vm_special_mapping.
                if (kernel.Symbols.TrySymbolize(nameFn, out KernelSymbol fn, out ulong off) && off == 0 && fn.Name == "special_mapping_name")
                {
                    return vma.Member("vm_private_data").Cast("struct vm_special_mapping *").Member("name").ReadString(256);
                }

                return $"[{kernel.Symbols.Describe(nameFn)}]";
            }
        }

        if (start <= context.Brk && end >= context.StartBrk)
        {
            return "[heap]";
        }

        if (start <= context.StartStack && end >= context.StartStack)
        {
            return "[stack]";
        }

        if (context.HasAnonName)
        {
            KernelObject anon = vma.Member("anon_name");
            if (!anon.IsNull)
            {
                return $"[anon:{anon.Member("name").ReadString(256)}]";
            }
        }

        return string.Empty;
    }

    /// <summary>
    /// The path of a <c>struct path</c> as <c>d_path</c> builds it (<c>fs/d_path.c prepend_path</c>): dentry names up
    /// to each mount's root, then across to the mount point in the parent mount, up to the root of the mount tree.
    /// </summary>
    public static string FilePath(LinuxKernel kernel, KernelObject path)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(path);
        ulong dentry = path.Member("dentry").ToUInt64();
        ulong vfsmnt = path.Member("mnt").ToUInt64();
        var types = kernel.Types;
        int mountType = types.FindType("struct mount");
        int dentryType = types.FindType("struct dentry");
        ulong mntOffset = types.Member(mountType, "mnt").ByteOffset;
        ulong mntRootOff = types.Member(types.FindType("struct vfsmount"), "mnt_root").ByteOffset;
        ulong mntParentOff = types.Member(mountType, "mnt_parent").ByteOffset;
        ulong mountpointOff = types.Member(mountType, "mnt_mountpoint").ByteOffset;
        ulong parentOff = types.Member(dentryType, "d_parent").ByteOffset;
        ulong nameOff = types.Member(dentryType, "d_name.name").ByteOffset;
        ulong lenOff = types.Member(dentryType, "d_name.len").ByteOffset;
        var parts = new List<string>();
        for (int depth = 0; ; depth++)
        {
            if (depth > MaxPathDepth)
            {
                throw new KernelDataException(dentry, "dentry chain", $"deeper than {MaxPathDepth} components (a loop)");
            }

            ulong mount = vfsmnt - mntOffset;
            if (dentry == kernel.ReadU64(vfsmnt + mntRootOff, "vfsmount.mnt_root"))
            {
                ulong parent = kernel.ReadU64(mount + mntParentOff, "mount.mnt_parent");
                if (parent == mount)
                {
                    break; // the root of the mount tree
                }

                dentry = kernel.ReadU64(mount + mountpointOff, "mount.mnt_mountpoint");
                vfsmnt = parent + mntOffset;
                continue;
            }

            ulong up = kernel.ReadU64(dentry + parentOff, "dentry.d_parent");
            if (up == dentry)
            {
                break; // IS_ROOT: a dentry outside its mount's tree (e.g. a detached one)
            }

            uint len = kernel.ReadU32(dentry + lenOff, "dentry.d_name.len");
            ulong namePtr = kernel.ReadU64(dentry + nameOff, "dentry.d_name.name");
            byte[] bytes = new byte[Math.Min(len, 255u)];
            kernel.ReadExactly(namePtr, bytes, "dentry name");
            parts.Add(Encoding.UTF8.GetString(bytes));
            dentry = up;
        }

        if (parts.Count == 0)
        {
            return "/";
        }

        var sb = new StringBuilder();
        for (int i = parts.Count - 1; i >= 0; i--)
        {
            sb.Append('/').Append(parts[i]);
        }

        return sb.ToString();
    }

    /// <summary>The mm fields the anonymous names are decided by.</summary>
    private sealed class NameContext
    {
        public NameContext(LinuxKernel kernel, KernelObject mm)
        {
            StartBrk = mm.Member("start_brk").ToUInt64();
            Brk = mm.Member("brk").ToUInt64();
            StartStack = mm.Member("start_stack").ToUInt64();
            int vmaType = kernel.Types.FindType("struct vm_area_struct");
            HasAnonName = kernel.Types.FindMember(vmaType, "anon_name") is not null;
            HasAnonVma = kernel.Types.FindMember(vmaType, "anon_vma") is not null;
        }

        public ulong StartBrk { get; }

        public ulong Brk { get; }

        public ulong StartStack { get; }

        public bool HasAnonName { get; }

        public bool HasAnonVma { get; }
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
