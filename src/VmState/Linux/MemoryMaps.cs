namespace VmState.Linux;

/// <summary>
/// The memory maps of a process (<c>vmstate maps PID</c>, <c>/proc/PID/maps</c>, <c>fs/proc/task_mmu.c</c>): the
/// VMAs of its <c>mm</c> (<see cref="KernelVmas.ForEachVma"/>: the maple tree of Linux 6.1+ or the older
/// <c>mm->mmap</c> list), described as <c>show_map_vma</c> does: flags, file offset, device and inode, and the name
/// (a file path from <see cref="DentryPaths.DPath"/>, or <c>[heap]</c>, <c>[stack]</c>, a special mapping's name,
/// <c>[anon:NAME]</c>).
/// </summary>
public static class MemoryMaps
{
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
        IReadOnlyList<KernelObject> vmas = kernel.ForEachVma(mm);
        var context = new NameContext(kernel, mm);
        var result = new List<LinuxVma>(vmas.Count);
        foreach (KernelObject v in vmas)
        {
            result.Add(Describe(kernel, v, context));
        }

        return result;
    }

    /// <summary>The <c>struct mm_struct</c> of a task (its user memory).</summary>
    /// <exception cref="KernelDataException">A kernel thread, or a process that is exiting (no mm).</exception>
    public static KernelObject UserMm(KernelObject task)
    {
        ArgumentNullException.ThrowIfNull(task);
        KernelObject mm = task.Member("mm");
        if (mm.IsNull)
        {
            throw new KernelDataException(task.Address, $"task {task.Member("pid").ToInt64()} ({task.Member("comm").ReadString()})", "has no mm: a kernel thread, or a process that is exiting, has no user memory");
        }

        return mm.Deref();
    }

    /// <summary>The task with pid <paramref name="pid"/>: <see cref="KernelPids.FindTask"/>.</summary>
    /// <exception cref="VmStateNotFoundException">No such task (<see cref="VmStateObjectKind.Process"/>).</exception>
    /// <exception cref="KernelDataException">A corrupt task list.</exception>
    public static KernelObject FindTask(LinuxKernel kernel, int pid) => KernelPids.FindTask(kernel, pid);

    /// <summary>The path of a <c>struct path</c>: <see cref="DentryPaths.DPath"/>.</summary>
    /// <exception cref="KernelDataException">A dentry chain deeper than 4096 components (a loop), or unreadable memory.</exception>
    public static string FilePath(LinuxKernel kernel, KernelObject path) => DentryPaths.DPath(kernel, path);

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
            name = kernel.DPath(file.Member("f_path"));
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
}
