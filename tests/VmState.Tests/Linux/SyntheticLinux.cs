using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.Linux;
using VmState.Machine;
using VmState.Tests.Support;

namespace VmState.Tests.Linux;

/// <summary>
/// A small x86-64 Linux kernel laid out in synthetic physical memory the way a real one is: a KASLR-shifted image
/// mapped with 2 MiB pages (banner, kallsyms tables, BTF, init_task, globals), a direct map of all RAM at a
/// randomized page_offset_base, per-CPU areas, and a task list — processes 1, 2, 3, 100 (two threads) and 200 (a
/// zombie) — whose struct layouts come from the BTF written alongside. Optionally a VMCOREINFO note and vCPUs.
/// </summary>
public sealed class SyntheticLinux
{
    public const ulong StartKernelMap = 0xffffffff80000000UL;
    public const ulong Slide = 0x1e00000;
    public const ulong TextPa = 0x2000000;
    public const string Release = "6.1.99-synthetic";
    public const ulong PercpuCurrentTask = 0x1000;

    // task_struct layout (bytes) written into the BTF below.
    public const int TaskState = 0, TaskFlags = 4, TaskUnion = 8, TaskTasks = 16, TaskMm = 32, TaskExitState = 40, TaskPid = 44, TaskTgid = 48,
        TaskBits = 52, TaskRealParent = 56, TaskComm = 64, TaskRealCred = 80, TaskSignal = 88, TaskThreadNode = 96, TaskStart = 112, TaskStaticPrio = 120, TaskStack = 128, TaskThread = 136, TaskWorkerPrivate = 168, TaskSize = 256;

    // struct kthread, struct worker, struct worker_pool, struct workqueue_attrs and struct workqueue_struct layouts (bytes).
    public const int KthreadData = 8, KthreadFullName = 16, WorkerCurrentWork = 0, WorkerPool = 8, WorkerDesc = 16, WorkerId = 40, WorkerRescueWq = 48,
        PoolCpu = 0, PoolId = 4, PoolAttrs = 8, AttrsNice = 0, WqName = 0;

    // thread_struct (at TaskThread) and pt_regs layouts (bytes), as on x86-64.
    public const int ThreadFsbase = 0, ThreadGsbase = 8, ThreadEs = 16, ThreadDs = 18, ThreadFsindex = 20, ThreadGsindex = 22, PtRegsSize = 168;

    // mm_struct layout (bytes; the mm of a user task is at task + 0xa00).
    public const int MmMmap = 24, MmMapCount = 32, MmStartBrk = 40, MmBrk = 48, MmStartStack = 56, MmSavedAuxv = 64, MmSize = 64 + (48 * 8);

    // struct module layout (bytes).
    public const int ModuleCore = 80, ModuleInit = 96, ModuleRefcnt = 112, ModuleKallsyms = 120, ModuleSize = 128;
    public const ulong ModulesPa = 0x5100000;

    private const ulong BannerOff = 0x100000, GlobalsOff = 0x101000, InitTaskOff = 0x102000, PgtOff = 0x110000, BtfOff = 0x200000, KallsymsOff = 0x400000, ImageSize = 0x800000;
    private const ulong TasksPa = 0x4000000, PercpuPa = 0x6000000, UserPa = 0x5000000, UserVa = 0x7ffd0000;

    private readonly PageTableBuilder _pt;

    public SyntheticLinux(PagingMode mode = PagingMode.Level4, bool vmcoreinfo = true, bool vmcoreinfoKallsyms = true, bool cpus = true, ulong cr3Bits = 0, long? vmcoreinfoPhysBaseOverride = null, Action<BtfWriter>? moreTypes = null, IEnumerable<string>? moreFunctions = null)
    {
        Mode = mode;
        _pt = new PageTableBuilder(mode, memorySize: 128 << 20);
        Text = StartKernelMap + 0x1000000 + Slide;
        PhysBase = (long)TextPa - (long)(Text - StartKernelMap);
        PageOffsetBase = mode == PagingMode.Level5 ? 0xff3f_f862_0000_0000UL : 0xffff_9b4c_0000_0000UL;

        for (ulong off = 0; off < ImageSize; off += 0x200000)
        {
            _pt.Map(Text + off, TextPa + off, 0x200000, user: false);
        }

        _pt.Map(PageOffsetBase, 0, 1UL << 30, user: false, nx: true);
        _pt.Map(UserVa, UserPa, 0x1000);

        // As in the kernel, the top-level table (init_top_pgt) lives in the image's data: copy the builder's root there.
        byte[] top = new byte[4096];
        _pt.Read(_pt.Root, top);
        InitTopPgt = Text + PgtOff;
        Root = TextPa + PgtOff;
        _pt.WritePhysical(Root, top);

        // Globals in the image.
        Banner = $"Linux version {Release} (builder@test) (gcc 12) #1 SMP PREEMPT_DYNAMIC";
        WriteVirtual(Text + BannerOff, Encoding.ASCII.GetBytes(Banner + "\n\0"));
        WriteU64(Text + GlobalsOff, PageOffsetBase);
        WriteU32(Text + GlobalsOff + 8, 2);
        for (int cpu = 0; cpu < 2; cpu++)
        {
            WriteU64(Text + GlobalsOff + 0x10 + (8 * (ulong)cpu), PerCpuOffset(cpu));
        }

        Btf = BuildBtf(moreTypes);
        WriteVirtual(Text + BtfOff, Btf);
        BuildTasks();
        BuildModules();

        var symbols = new List<(string, char, ulong)>
        {
            ("_text", 'T', Text), ("_stext", 'T', Text), ("linux_banner", 'D', Text + BannerOff), ("page_offset_base", 'D', Text + GlobalsOff),
            ("nr_cpu_ids", 'D', Text + GlobalsOff + 8), ("__per_cpu_offset", 'D', Text + GlobalsOff + 0x10), ("init_task", 'D', InitTask),
            ("__start_BTF", 'R', Text + BtfOff), ("__stop_BTF", 'R', Text + BtfOff + (ulong)Btf.Length), ("init_top_pgt", 'D', InitTopPgt),
            ("current_task", 'A', PercpuCurrentTask), ("_end", 'B', Text + ImageSize - 0x1000), ("modules", 'd', Text + GlobalsOff + 0x100),
        };
        var r = new Random(17);
        for (int i = 0; i < 400; i++)
        {
            symbols.Add(($"func_{i}_{r.Next(1000)}", i % 3 == 0 ? 'T' : 't', Text + 0x1000 + ((ulong)i * 0x100)));
        }

        // Extra static functions, after the others (a kernel's own functions that tell its version apart).
        foreach ((string f, int i) in (moreFunctions ?? []).Select((f, i) => (f, i)))
        {
            symbols.Add((f, 't', Text + 0x1000 + ((ulong)(400 + i) * 0x100)));
        }

        var kw = new KallsymsWriter(symbols, KallsymsAddressEncoding.AbsolutePercpu, KallsymsOrder.Pre64, Text);
        WriteVirtual(Text + KallsymsOff, kw.Build(Text + KallsymsOff));
        SymbolCount = symbols.Count;

        byte[]? note = null;
        if (vmcoreinfo)
        {
            var sb = new StringBuilder();
            sb.Append(CultureInfo.InvariantCulture, $"OSRELEASE={Release}\nPAGESIZE=4096\n");
            sb.Append(CultureInfo.InvariantCulture, $"SYMBOL(swapper_pg_dir)={InitTopPgt:x}\nSYMBOL(_stext)={Text:x}\n");
            if (vmcoreinfoKallsyms)
            {
                foreach ((string k, ulong v) in kw.Labels)
                {
                    if (k is not ("kallsyms_markers" or "kallsyms_seqs_of_names"))
                    {
                        sb.Append(CultureInfo.InvariantCulture, $"SYMBOL({k})={v:x}\n");
                    }
                }
            }

            sb.Append(CultureInfo.InvariantCulture, $"NUMBER(phys_base)={vmcoreinfoPhysBaseOverride ?? PhysBase}\nSYMBOL(init_top_pgt)={InitTopPgt:x}\n");
            sb.Append(CultureInfo.InvariantCulture, $"NUMBER(pgtable_l5_enabled)={(mode == PagingMode.Level5 ? 1 : 0)}\nKERNELOFFSET={Slide:x}\n");
            note = Note(sb.ToString());
        }

        var cpuList = new List<X86CpuState>();
        if (cpus)
        {
            for (int i = 0; i < 2; i++)
            {
                var c = new X86CpuState
                {
                    Index = i,
                    Cr0 = 0x80050033,
                    Cr3 = Root | cr3Bits,
                    Cr4 = 0x6b0 | (mode == PagingMode.Level5 ? 0x1000UL : 0) | (cr3Bits != 0 ? 0x20000UL : 0),
                    Efer = 0xd01,
                };
                c.Segments[X86CpuState.Cs] = new X86Segment(0x10, 0, 0xffffffff, 0x209b00);
                c.Segments[X86CpuState.Gs] = new X86Segment(0, PerCpuOffset(i), 0xffffffff, 0x9300);
                cpuList.Add(c);
            }
        }

        Machine = new MachineState(new ElfCoreOrigin("synthetic", "test", [], note), null, _pt, cpuList, [], [], [], null);
    }

    public PagingMode Mode { get; }

    public MachineState Machine { get; }

    public ulong Root { get; }

    public ulong Text { get; }

    public long PhysBase { get; }

    public ulong PageOffsetBase { get; }

    public ulong InitTopPgt { get; }

    public string Banner { get; }

    public byte[] Btf { get; }

    public int SymbolCount { get; }

    public ulong InitTask => Text + InitTaskOff;

    /// <summary>pid → task_struct address (thread 101 included).</summary>
    public Dictionary<int, ulong> Tasks { get; } = [];

    public ulong PerCpuOffset(int cpu) => PageOffsetBase + PercpuPa + ((ulong)cpu * 0x100000);

    public ulong PhysicalOf(ulong va) =>
        va >= PageOffsetBase && va - PageOffsetBase < (1UL << 30) ? va - PageOffsetBase
        : va >= Text && va - Text < ImageSize ? TextPa + (va - Text)
        : throw new ArgumentOutOfRangeException(nameof(va));

    public void WriteVirtual(ulong va, ReadOnlySpan<byte> data) => _pt.WritePhysical(PhysicalOf(va), data);

    public void WriteU64(ulong va, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        WriteVirtual(va, b);
    }

    public void WriteU32(ulong va, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        WriteVirtual(va, b);
    }

    private static byte[] Note(string text)
    {
        byte[] desc = Encoding.ASCII.GetBytes(text);
        byte[] note = new byte[24 + ((desc.Length + 3) & ~3)];
        BinaryPrimitives.WriteUInt32LittleEndian(note, 11);
        BinaryPrimitives.WriteUInt32LittleEndian(note.AsSpan(4), (uint)desc.Length);
        "VMCOREINFO\0"u8.CopyTo(note.AsSpan(12));
        desc.CopyTo(note, 24);
        return note;
    }

    private static byte[] BuildBtf(Action<BtfWriter>? moreTypes)
    {
        var w = new BtfWriter();
        int i32 = w.Int("int", 4, signed: true);
        int u32 = w.Int("unsigned int", 4);
        int ch = w.Int("char", 1, signed: true, isChar: true);
        int ul = w.Int("long unsigned int", 8);
        int u64 = w.Typedef("u64", ul);
        int lh = w.NextId;
        w.Struct("list_head", 16, ("next", lh + 1, 0, 0), ("prev", lh + 1, 64, 0));
        w.Ptr(lh);
        int uidT = w.Typedef("uid_t", u32);
        int kuid = w.Typedef("kuid_t", w.Struct(string.Empty, 4, ("val", uidT, 0, 0)));
        int kgid = w.Typedef("kgid_t", w.Struct(string.Empty, 4, ("val", u32, 0, 0)));
        int cred = w.Struct("cred", 16, ("usage", i32, 0, 0), ("uid", kuid, 32, 0), ("gid", kgid, 64, 0));
        int signal = w.Struct("signal_struct", 24, ("nr_threads", i32, 0, 0), ("thread_head", lh, 64, 0));
        int pgd = w.Typedef("pgd_t", w.Struct(string.Empty, 8, ("pgd", ul, 0, 0)));
        // mm_struct and vm_area_struct with the pre-6.1 VMA list (mm->mmap, vm_next): MmMmap.. offsets below.
        int vma = w.NextId;
        int vmaPtr = vma + 1;
        int fileFwd = vma + 2;
        int opsPtr = vma + 5;
        int voidP = vma + 6;
        w.Struct("vm_area_struct", 0x48,
            ("vm_start", ul, 0, 0), ("vm_end", ul, 64, 0), ("vm_next", vmaPtr, 128, 0), ("vm_mm", voidP, 192, 0), ("vm_flags", ul, 256, 0),
            ("vm_pgoff", ul, 320, 0), ("vm_file", fileFwd + 1, 384, 0), ("vm_ops", opsPtr, 448, 0), ("vm_private_data", voidP, 512, 0));
        Assert.Equal(vmaPtr, w.Ptr(vma));
        Assert.Equal(fileFwd, w.Fwd("file", union: false));
        w.Ptr(fileFwd);
        int ops = w.Struct("vm_operations_struct", 8, ("name", voidP, 0, 0));
        Assert.Equal(opsPtr, w.Ptr(ops));
        Assert.Equal(voidP, w.Ptr(0));
        int mm = w.Struct("mm_struct", MmSize, ("pgd", w.Ptr(pgd), 0, 0), ("arg_start", ul, 64, 0), ("arg_end", ul, 128, 0),
            ("mmap", vmaPtr, MmMmap * 8, 0), ("map_count", i32, MmMapCount * 8, 0), ("start_brk", ul, MmStartBrk * 8, 0),
            ("brk", ul, MmBrk * 8, 0), ("start_stack", ul, MmStartStack * 8, 0), ("saved_auxv", w.Array(ul, i32, 48), MmSavedAuxv * 8, 0));
        int comm = w.Array(ch, i32, 16);
        int lohi = w.Struct(string.Empty, 8, ("lo", u32, 0, 0), ("hi", u32, 32, 0));
        int anon = w.Union(string.Empty, 8, ("whole", u64, 0, 0), (string.Empty, lohi, 0, 0));
        int u16 = w.Int("short unsigned int", 2);
        int thread = w.Struct("thread_struct", 24, ("fsbase", ul, ThreadFsbase * 8, 0), ("gsbase", ul, ThreadGsbase * 8, 0), ("es", u16, ThreadEs * 8, 0),
            ("ds", u16, ThreadDs * 8, 0), ("fsindex", u16, ThreadFsindex * 8, 0), ("gsindex", u16, ThreadGsindex * 8, 0));
        string[] regs = ["r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss"];
        w.Struct("pt_regs", PtRegsSize, [.. regs.Select((n, i) => (n, ul, (uint)(i * 64), 0u))]);
        int stackPtr = w.Ptr(0);
        int task = w.NextId;
        int taskPtr = task + 1, mmPtr = task + 2, credPtr = task + 4, signalPtr = task + 5;
        w.Struct("task_struct", TaskSize,
            ("__state", u32, TaskState * 8, 0),
            ("flags", u32, TaskFlags * 8, 0),
            (string.Empty, anon, TaskUnion * 8, 0),
            ("tasks", lh, TaskTasks * 8, 0),
            ("mm", mmPtr, TaskMm * 8, 0),
            ("exit_state", i32, TaskExitState * 8, 0),
            ("pid", i32, TaskPid * 8, 0),
            ("tgid", i32, TaskTgid * 8, 0),
            ("in_execve", u32, (TaskBits * 8) + 1, 1),
            ("sched_policy_bits", u32, (TaskBits * 8) + 2, 3),
            ("real_parent", taskPtr, TaskRealParent * 8, 0),
            ("comm", comm, TaskComm * 8, 0),
            ("real_cred", credPtr, TaskRealCred * 8, 0),
            ("signal", signalPtr, TaskSignal * 8, 0),
            ("thread_node", lh, TaskThreadNode * 8, 0),
            ("start_boottime", u64, TaskStart * 8, 0),
            ("static_prio", i32, TaskStaticPrio * 8, 0),
            ("stack", stackPtr, TaskStack * 8, 0),
            ("thread", thread, TaskThread * 8, 0),
            ("worker_private", voidP, TaskWorkerPrivate * 8, 0));
        Assert.Equal(taskPtr, w.Ptr(task));
        Assert.Equal(mmPtr, w.Ptr(mm));
        Assert.Equal(credPtr, w.Ptr(w.Const(cred)));
        Assert.Equal(signalPtr, w.Ptr(signal));
        // Workqueue workers and kthreads (kernel/kthread.c struct kthread, kernel/workqueue_internal.h struct worker).
        int namePtr = w.Ptr(ch);
        int desc = w.Array(ch, i32, 24);
        w.Struct("kthread", 24, ("flags", ul, 0, 0), ("data", voidP, KthreadData * 8, 0), ("full_name", namePtr, KthreadFullName * 8, 0));
        int attrs = w.Struct("workqueue_attrs", 4, ("nice", i32, AttrsNice * 8, 0));
        int pool = w.Struct("worker_pool", 16, ("cpu", i32, PoolCpu * 8, 0), ("id", i32, PoolId * 8, 0), ("attrs", w.Ptr(attrs), PoolAttrs * 8, 0));
        int wq = w.Struct("workqueue_struct", 24, ("name", desc, WqName * 8, 0));
        w.Struct("worker", 56, ("current_work", voidP, WorkerCurrentWork * 8, 0), ("pool", w.Ptr(pool), WorkerPool * 8, 0), ("desc", desc, WorkerDesc * 8, 0),
            ("id", i32, WorkerId * 8, 0), ("rescue_wq", w.Ptr(wq), WorkerRescueWq * 8, 0));
        int var = w.Var("current_task", taskPtr);
        w.DataSec(".data..percpu", 0x2000, (var, (uint)PercpuCurrentTask, 8));

        // Modules (≤6.3 layout, kernel/module/main.c): struct module with core_layout/init_layout and mod_kallsyms.
        int state = w.Enum("module_state", 4, signed: false, ("MODULE_STATE_LIVE", 0), ("MODULE_STATE_COMING", 1), ("MODULE_STATE_GOING", 2), ("MODULE_STATE_UNFORMED", 3));
        int voidPtr = w.Ptr(0);
        int layout = w.Struct("module_layout", 16, ("base", voidPtr, 0, 0), ("size", u32, 64, 0));
        int atomic = w.Typedef("atomic_t", w.Struct(string.Empty, 4, ("counter", i32, 0, 0)));
        int charPtr = w.Ptr(ch);
        int kallsyms = w.Struct("mod_kallsyms", 32, ("symtab", w.Ptr(u64), 0, 0), ("num_symtab", u32, 64, 0), ("strtab", charPtr, 128, 0), ("typetab", charPtr, 192, 0));
        int name = w.Array(ch, i32, 56);
        w.Struct("module", ModuleSize, ("state", state, 0, 0), ("list", lh, 64, 0), ("name", name, 192, 0), ("core_layout", layout, ModuleCore * 8, 0),
            ("init_layout", layout, ModuleInit * 8, 0), ("refcnt", atomic, ModuleRefcnt * 8, 0), ("kallsyms", w.Ptr(kallsyms), ModuleKallsyms * 8, 0));
        moreTypes?.Invoke(w);
        return w.Build();
    }

    private void BuildTasks()
    {
        // (pid, tgid, comm, uid, state, exit_state, kthread, parent pid)
        (int Pid, int Tgid, string Comm, uint Uid, uint State, int Exit, bool Kthread, int Parent)[] specs =
        [
            (1, 1, "init", 0, 1, 0, false, 0),
            (2, 2, "kthreadd", 0, 1, 0, true, 0),
            (3, 3, "kworker/0:0", 0, 0x402, 0, true, 2),
            (100, 100, "worker", 1000, 0, 0, false, 1),
            (101, 100, "worker-t", 1000, 2, 0, false, 1),
            (200, 200, "zombie", 0, 0x80, 0x20, false, 1),
        ];
        Tasks[0] = InitTask;
        for (int i = 0; i < specs.Length; i++)
        {
            Tasks[specs[i].Pid] = PageOffsetBase + TasksPa + ((ulong)i * 0x1000);
        }

        WriteTask(InitTask, 0, 0, "swapper/0", 0, 0, 0, true, InitTask, mm: 0, start: 0);
        ulong start = 100_000_000;
        foreach ((int pid, int tgid, string comm, uint uid, uint state, int exit, bool kthread, int parent) in specs)
        {
            ulong t = Tasks[pid];
            ulong mm = 0;
            if (!kthread && pid != 200)
            {
                mm = t + 0xa00;
                WriteU64(mm, PageOffsetBase + Root);
                WriteU64(mm + 8, UserVa + 0x10);
                WriteU64(mm + 16, UserVa + 0x10 + 18);
            }

            WriteTask(t, pid, tgid, comm, uid, state, exit, kthread, Tasks[parent], mm, start);
            start += 50_000_000;
        }

        _pt.WritePhysical(UserPa + 0x10, "/sbin/init\0splash\0"u8);

        // for_each_process list: init_task → 1 → 2 → 3 → 100 → 200 → init_task (101 is a thread, not on it).
        ulong[] ring = [InitTask, Tasks[1], Tasks[2], Tasks[3], Tasks[100], Tasks[200]];
        for (int i = 0; i < ring.Length; i++)
        {
            WriteU64(ring[i] + TaskTasks, ring[(i + 1) % ring.Length] + TaskTasks);
            WriteU64(ring[i] + TaskTasks + 8, ring[(i + ring.Length - 1) % ring.Length] + TaskTasks);
        }

        // Thread groups: signal->thread_head ↔ thread_node of each member.
        foreach ((int leader, int[] members) in new[] { (0, new[] { 0 }), (1, [1]), (2, [2]), (3, [3]), (100, [100, 101]), (200, [200]) })
        {
            ulong sig = leader == 0 ? Text + InitTaskOff + 0x400 : Tasks[leader] + 0x900;
            WriteU32(sig, (uint)members.Length);
            ulong head = sig + 8;
            ulong[] nodes = [head, .. members.Select(m => Tasks[m] + TaskThreadNode)];
            for (int i = 0; i < nodes.Length; i++)
            {
                WriteU64(nodes[i], nodes[(i + 1) % nodes.Length]);
                WriteU64(nodes[i] + 8, nodes[(i + nodes.Length - 1) % nodes.Length]);
            }

            foreach (int m in members)
            {
                WriteU64(Tasks[m] + TaskSignal, sig);
            }
        }

        WriteU64(PerCpuOffset(0) + PercpuCurrentTask, InitTask);
        WriteU64(PerCpuOffset(1) + PercpuCurrentTask, Tasks[1]);
    }

    /// <summary>Module address → (name, symbols), in list order.</summary>
    public List<(ulong Address, string Name, (string Name, char Type, ulong Value)[] Symbols)> Modules { get; } = [];

    private void BuildModules()
    {
        ulong head = Text + GlobalsOff + 0x100;
        (string Name, int Refs, (string, char, ulong)[] Syms)[] specs =
        [
            ("mod_a", 0, [("mod_a_init", 't', 0xffffffffc0001000), ("mod_a_data", 'd', 0xffffffffc0002000)]),
            ("mod_b", 2, [("mod_b_export", 'T', 0xffffffffc0010000)]),
        ];
        var nodes = new List<ulong> { head };
        for (int i = 0; i < specs.Length; i++)
        {
            ulong m = PageOffsetBase + ModulesPa + ((ulong)i * 0x10000);
            (string name, int refs, (string, char, ulong)[] syms) = specs[i];
            WriteU32(m, 0);
            byte[] n = new byte[56];
            Encoding.ASCII.GetBytes(name).CopyTo(n, 0);
            WriteVirtual(m + 24, n);
            WriteU64(m + ModuleCore, 0xffffffffc0000000 + ((ulong)i * 0x10000));
            WriteU32(m + ModuleCore + 8, 0x3000);
            WriteU32(m + ModuleInit + 8, 0x1000);
            WriteU32(m + ModuleRefcnt, (uint)(refs + 1));

            // mod_kallsyms at +0x200, symtab (null symbol first) at +0x300, strtab at +0x800, typetab at +0xa00.
            ulong ks = m + 0x200;
            WriteU64(m + ModuleKallsyms, ks);
            WriteU64(ks, m + 0x300);
            WriteU32(ks + 8, (uint)syms.Length + 1);
            WriteU64(ks + 16, m + 0x800);
            WriteU64(ks + 24, m + 0xa00);
            var strtab = new List<byte> { 0 };
            byte[] symtab = new byte[24 * (syms.Length + 1)];
            byte[] typetab = new byte[syms.Length + 1];
            for (int j = 0; j < syms.Length; j++)
            {
                (string sn, char st, ulong sv) = syms[j];
                BinaryPrimitives.WriteUInt32LittleEndian(symtab.AsSpan(24 * (j + 1)), (uint)strtab.Count);
                BinaryPrimitives.WriteUInt64LittleEndian(symtab.AsSpan((24 * (j + 1)) + 8), sv);
                strtab.AddRange(Encoding.ASCII.GetBytes(sn));
                strtab.Add(0);
                typetab[j + 1] = (byte)st;
            }

            WriteVirtual(m + 0x300, symtab);
            WriteVirtual(m + 0x800, strtab.ToArray());
            WriteVirtual(m + 0xa00, typetab);
            nodes.Add(m + 8);
            Modules.Add((m, name, syms));
        }

        for (int i = 0; i < nodes.Count; i++)
        {
            WriteU64(nodes[i], nodes[(i + 1) % nodes.Count]);
            WriteU64(nodes[i] + 8, nodes[(i + nodes.Count - 1) % nodes.Count]);
        }
    }

    private void WriteTask(ulong t, int pid, int tgid, string comm, uint uid, uint state, int exit, bool kthread, ulong parent, ulong mm, ulong start)
    {
        WriteU32(t + TaskState, state);
        WriteU32(t + TaskFlags, kthread ? 0x00200040u : 0x00400100u);
        WriteU64(t + TaskUnion, 0x1122334455667788);
        WriteU64(t + TaskMm, mm);
        WriteU32(t + TaskExitState, (uint)exit);
        WriteU32(t + TaskPid, (uint)pid);
        WriteU32(t + TaskTgid, (uint)tgid);
        WriteVirtual(t + TaskBits, [(byte)(0b0001_0110 | (pid & 1) << 7)]); // in_execve = 1, sched_policy_bits = 0b101
        WriteU64(t + TaskRealParent, parent);
        byte[] name = new byte[16];
        Encoding.ASCII.GetBytes(comm).CopyTo(name, 0);
        WriteVirtual(t + TaskComm, name);
        ulong cred = t + 0x800;
        WriteU32(cred, 1);
        WriteU32(cred + 4, uid);
        WriteU32(cred + 8, uid == 0 ? 0 : uid + 1);
        WriteU64(t + TaskRealCred, cred);
        WriteU64(t + TaskStart, start);
    }
}
