using System.Buffers.Binary;
using System.Text;
using VmState.Arch.Arm64;
using VmState.Arch.X86;
using VmState.IO;
using VmState.Formats.Elf;

namespace VmState.Linux;

/// <summary>What <see cref="ProcessCore.Write"/> wrote.</summary>
/// <param name="Pid">The process (thread-group) id.</param>
/// <param name="Comm">Its name.</param>
/// <param name="Threads">Threads written as NT_PRSTATUS notes, with where each one's registers came from.</param>
/// <param name="Segments">PT_LOAD segments (one per VMA).</param>
/// <param name="PagesWritten">Pages read from guest memory and written.</param>
/// <param name="PagesMissing">Pages of dumped VMAs that were not present (swapped out or never touched): holes.</param>
/// <param name="FileBytes">Size of the core file.</param>
public sealed record ProcessCoreSummary(int Pid, string Comm, IReadOnlyList<(int Tid, string RegisterSource)> Threads, int Segments, long PagesWritten, long PagesMissing, long FileBytes);

/// <summary>
/// An ELF core of one guest process, as the kernel's own core dump lays it out (<c>fs/binfmt_elf.c</c>): a PT_NOTE
/// with NT_PRSTATUS per thread (user registers from the pt_regs saved at the top of each thread's kernel stack, or
/// the vCPU's registers for a thread running in user mode at the time; on AArch64 followed by the thread's NT_FPREGSET,
/// see <see cref="Arm64UserFpsimd"/>), NT_PRPSINFO, NT_AUXV (<c>mm->saved_auxv</c>)
/// and NT_FILE (the file-backed VMAs), then one PT_LOAD per VMA with the pages read through the process's page
/// tables. Pages that are not present become holes (zeros); VM_IO and VM_DONTDUMP areas get no file bytes, as the
/// kernel's <c>vma_dump_size</c> decides. A process with 65,534 VMAs or more gets PN_XNUM numbering (the count in
/// section header 0's <c>sh_info</c>, as the kernel's <c>fill_extnum_info</c> does). The file is made by
/// <see cref="ElfCoreBuilder"/>, as machine cores are. gdb opens it with the process's binary: <c>gdb BINARY CORE</c>.
/// </summary>
public static class ProcessCore
{
    private const uint NtPrpsinfo = 3;
    private const uint NtAuxv = 6;
    private const uint NtFile = 0x4649_4c45;      // "FILE"
    private const int PageSize = 4096;
    private const ulong VmIo = 0x4000;
    private const ulong VmDontdump = 0x0400_0000;
    private const int PrpsinfoSize = 136;
    private const int UserCs = 0x33;              // __USER_CS
    private const int UserSs = 0x2b;              // __USER_DS
    private const uint NtArmPacMask = 0x406;      // arm64 NT_ARM_PAC_MASK (include/uapi/linux/elf.h)

    /// <summary>
    /// THREAD_SIZE on x86-64: 16 KiB, or 32 KiB with CONFIG_KASAN (KASAN_STACK_ORDER, asm/page_64_types.h), which
    /// the kernel's kasan_report symbol reveals. One size for every task: trying both per task could land on the
    /// neighbouring task's stack.
    /// </summary>
    private static ulong ThreadSize(LinuxKernel kernel) => kernel.Symbols.TryGetAddress("kasan_report", out _) ? 32768UL : 16384UL;

    /// <summary>Writes the core of process <paramref name="pid"/> to <paramref name="path"/> (atomically).</summary>
    /// <exception cref="KernelDataException">No such process, a kernel thread, or unreadable kernel data.</exception>
    public static ProcessCoreSummary Write(LinuxKernel kernel, int pid, string path, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        KernelObject task = MemoryMaps.FindTask(kernel, pid);
        int tgid = (int)task.Member("tgid").ToInt64();
        KernelObject leader = tgid == pid ? task : MemoryMaps.FindTask(kernel, tgid);
        KernelObject mm = MemoryMaps.UserMm(leader);
        ulong pgd = mm.Member("pgd").ToUInt64();
        bool arm64 = kernel.Architecture == Arch.CpuArchitecture.Arm64;
        Func<ulong, ulong, IEnumerable<(ulong VirtualAddress, ulong PhysicalAddress, ulong Size)>> mappings = arm64
            ? Arm64Mappings(kernel.Arm64ProcessAddressSpace(pgd))
            : X86Mappings(kernel.ProcessAddressSpace(pgd));
        IReadOnlyList<LinuxVma> vmas = MemoryMaps.Read(kernel, mm);
        var core = new ElfCoreBuilder { Machine = arm64 ? ElfConstants.EmAarch64 : ElfConstants.EmX86_64, NoteAlignment = 4, DataAlignment = PageSize };
        var threads = new List<(int, string)>();
        int ppid = (int)leader.Member("real_parent").Member("tgid").ToInt64();
        var ordered = new List<KernelObject> { task };
        ordered.AddRange(kernel.ForEachThread(leader).Where(t => t.Address != task.Address));
        Dictionary<ulong, int> running = RunningTasks(kernel);
        foreach (KernelObject t in ordered)
        {
            int tid = (int)t.Member("pid").ToInt64();
            (byte[] regs, string source) = UserRegisters(kernel, t, running);
            byte[]? fpsimd = null;
            if (arm64)
            {
                try
                {
                    (fpsimd, string fpSource) = Arm64UserFpsimd.Read(kernel, t, Arm64RunningCpu(kernel, t));
                    source += $"; FP/SIMD from {fpSource}";
                }
                catch (KernelDataException e)
                {
                    source += $"; no FP/SIMD note: {e.Message}";
                }
            }

            core.AddNote(Prstatus(arm64, tid, ppid, tgid, regs, fpsimd is not null));
            if (fpsimd is not null)
            {
                // NT_FPREGSET follows NT_PRSTATUS, as in the kernel's own core dumps (the arm64 regset order).
                core.AddNote(new ElfNote("CORE", Arm64CoreNotes.NtFpregset, fpsimd));
            }

            if (arm64 && Arm64PointerAuthentication(kernel, t) is ulong pacMask)
            {
                // As the kernel's core dump adds the NT_ARM_PAC_MASK regset (arm64 ptrace.c pac_mask_get): gdb then
                // strips the signature from the return addresses it finds on the stack.
                byte[] masks = new byte[16];
                BinaryPrimitives.WriteUInt64LittleEndian(masks, pacMask);
                BinaryPrimitives.WriteUInt64LittleEndian(masks.AsSpan(8), pacMask);
                core.AddNote(new ElfNote("LINUX", NtArmPacMask, masks));
            }

            threads.Add((tid, source));
        }

        string comm = leader.Member("comm").ReadString();
        core.AddNote(Prpsinfo(leader, tgid, ppid, comm, ProcessList.Cmdline(kernel, mm) ?? string.Empty));
        core.AddNote(new ElfNote("CORE", NtAuxv, Auxv(mm)));
        core.AddNote(new ElfNote("CORE", NtFile, FileNote(vmas)));

        long pagesWritten = 0;
        long pagesMissing = 0;
        long total = vmas.Where(Dumped).Sum(v => (long)((v.End - v.Start) / PageSize));
        long done = 0;
        byte[] page = new byte[PageSize];
        foreach (LinuxVma v in vmas)
        {
            ulong size = v.End - v.Start;
            uint flags = (v.Readable ? 4u : 0) | (v.Writable ? 2u : 0) | (v.Executable ? 1u : 0);
            bool dumped = Dumped(v);
            core.AddLoad(v.Start, 0, flags, PageSize, dumped ? size : 0, size, dumped ? WritePages : null);

            void WritePages(ElfSegmentOutput output, CancellationToken ct)
            {
                // Only what the page tables map is read (a huge, mostly unmapped VMA costs only its tables); the
                // rest stays a hole in the sparse file.
                long vmaPages = (long)(size / PageSize);
                long written = 0;
                var covered = new HashSet<ulong>();
                bool vdso = v.Name == "[vdso]";
                foreach ((ulong VirtualAddress, ulong PhysicalAddress, ulong Size) run in mappings(v.Start, v.End - 1))
                {
                    ulong from = Math.Max(run.VirtualAddress, v.Start);
                    ulong to = Math.Min(run.VirtualAddress + run.Size, v.End);
                    for (ulong va = from; va < to; va += PageSize)
                    {
                        ct.ThrowIfCancellationRequested();
                        if (kernel.Memory.Read(run.PhysicalAddress + (va - run.VirtualAddress), page) != PageSize)
                        {
                            continue;
                        }

                        output.Write(va - v.Start, page);
                        written++;
                        if (vdso)
                        {
                            covered.Add(va);
                        }

                        if (++done % 4096 == 0)
                        {
                            progress?.Report((done, total));
                        }
                    }
                }

                if (vdso)
                {
                    // A vDSO page the process has not touched yet holds the kernel's vDSO image (vdso_image_64).
                    (ulong imageData, ulong imageSize) = VdsoImage(kernel);
                    for (ulong off = 0; off < Math.Min(imageSize, size); off += PageSize)
                    {
                        if (!covered.Contains(v.Start + off) && kernel.Read(imageData + off, page) == PageSize)
                        {
                            output.Write(off, page);
                            written++;
                        }
                    }
                }

                pagesWritten += written;
                pagesMissing += vmaPages - written;
            }
        }

        // Any number of VMAs is written (PN_XNUM from 65,534 on); what the builder refuses here came from the kernel's
        // VMA list.
        IReadOnlyList<string> problems = core.Verify();
        if (problems.Count > 0)
        {
            throw new KernelDataException(mm.Address, $"process {tgid}", $"its VMAs do not make an ELF core: {string.Join("; ", problems)}");
        }

        ElfCoreLayout layout = core.Layout();
        using (OutputFile output = OutputFile.Create(path, OutputRules.ForInputs([kernel.Machine.SourcePath])))
        {
            layout.WriteTo(output, cancellationToken);
            progress?.Report((total, total));
            output.Commit();
        }

        return new ProcessCoreSummary(tgid, comm, threads, vmas.Count, pagesWritten, pagesMissing, layout.FileSize);
    }

    /// <summary>
    /// The user registers of every thread of process <paramref name="pid"/>'s thread group, as its core's NT_PRSTATUS
    /// notes carry them (the thread <paramref name="pid"/> first).
    /// </summary>
    /// <exception cref="KernelDataException">No such process, a kernel thread, unreadable kernel data, or an AArch64
    /// kernel (whose threads' registers only <see cref="Write"/> reads so far: these are x86-64 user_regs_struct).</exception>
    public static IReadOnlyList<ThreadUserRegisters> ThreadRegisters(LinuxKernel kernel, int pid)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (kernel.Architecture == Arch.CpuArchitecture.Arm64)
        {
            throw new KernelDataException("thread registers", "not available for an AArch64 kernel yet as a list (procdump writes them into the core's NT_PRSTATUS notes)");
        }

        KernelObject task = MemoryMaps.FindTask(kernel, pid);
        int tgid = (int)task.Member("tgid").ToInt64();
        KernelObject leader = tgid == pid ? task : MemoryMaps.FindTask(kernel, tgid);
        MemoryMaps.UserMm(leader);
        var ordered = new List<KernelObject> { task };
        ordered.AddRange(kernel.ForEachThread(leader).Where(t => t.Address != task.Address));
        Dictionary<ulong, int> running = RunningTasks(kernel);
        var threads = new List<ThreadUserRegisters>();
        foreach (KernelObject t in ordered)
        {
            (byte[] regs, string source) = UserRegisters(kernel, t, running);
            ulong[] values = new ulong[regs.Length / 8];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = BinaryPrimitives.ReadUInt64LittleEndian(regs.AsSpan(i * 8));
            }

            threads.Add(new ThreadUserRegisters((int)t.Member("pid").ToInt64(), values, source));
        }

        return threads;
    }

    /// <summary>
    /// The user registers of a thread as the 27-quadword <c>user_regs_struct</c>: from the vCPU when the thread is
    /// running there in user mode, else from <c>task_pt_regs()</c> (the top of its kernel stack) and
    /// <c>thread.fsbase/gsbase</c>. On AArch64 the 34-quadword <c>user_pt_regs</c> (see <see cref="Arm64UserRegisters"/>).
    /// </summary>
    private static (byte[] Regs, string Source) UserRegisters(LinuxKernel kernel, KernelObject task, Dictionary<ulong, int> running)
    {
        if (kernel.Architecture == Arch.CpuArchitecture.Arm64)
        {
            return Arm64UserRegisters(kernel, task);
        }

        byte[] r = new byte[X86Registers.UserRegsCount * 8];
        if (running.TryGetValue(task.Address, out int cpuIndex) && cpuIndex < kernel.Machine.Cpus.Count)
        {
            X86CpuState cpu = kernel.Machine.Cpus[cpuIndex];
            if ((cpu.Segments[X86CpuState.Cs].Selector & 3) == 3)
            {
                ElfNote n = X86CoreNotes.Prstatus(cpu);
                n.Descriptor.AsSpan(X86CoreNotes.PrstatusRegsOffset, r.Length).CopyTo(r);
                return (r, $"vCPU {cpuIndex} (running in user mode)");
            }
        }

        int ptRegsType = kernel.Types.FindType("struct pt_regs");
        int size = (int)kernel.Types.SizeOf(ptRegsType);
        ulong stack = task.Member("stack").ToUInt64();
        ulong threadSize = ThreadSize(kernel);
        byte[] regs = new byte[size];
        ulong at = stack + threadSize - (ulong)size;
        if (kernel.Read(at, regs) != size)
        {
            throw new KernelDataException(at, $"kernel stack of task {task.Member("pid").ToInt64()}", $"the pt_regs at the top of its {threadSize / 1024} KiB stack are not mapped");
        }

        ulong cs = BinaryPrimitives.ReadUInt64LittleEndian(regs.AsSpan(Offset(kernel, ptRegsType, "cs")));
        ulong ss = BinaryPrimitives.ReadUInt64LittleEndian(regs.AsSpan(Offset(kernel, ptRegsType, "ss")));
        if (cs != UserCs || ss != UserSs)
        {
            throw new KernelDataException(at, $"kernel stack of task {task.Member("pid").ToInt64()}", $"no saved user pt_regs at the top of its {threadSize / 1024} KiB stack (cs 0x{cs:x}, ss 0x{ss:x}; expected 0x33 and 0x2b)");
        }

        // pt_regs holds user_regs_struct up to ss in the same order (r15 .. ss, arch/x86/include/asm/ptrace.h); the
        // rest the kernel's ptrace fills from the thread struct (arch/x86/kernel/ptrace.c getreg).
        int ptRegsQuadwords = X86Registers.Get("ss").UserRegsIndex + 1;
        regs.AsSpan(0, ptRegsQuadwords * 8).CopyTo(r);
        KernelObject thread = task.Member("thread");
        (string Register, string Member)[] fromThread = [("fs_base", "fsbase"), ("gs_base", "gsbase"), ("ds", "ds"), ("es", "es"), ("fs", "fsindex"), ("gs", "gsindex")];
        foreach ((string register, string member) in fromThread)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(X86Registers.Get(register).UserRegsIndex * 8), thread.Member(member).ToUInt64());
        }

        return (r, $"pt_regs at 0x{at:x} (kernel stack top, THREAD_SIZE {threadSize / 1024} KiB)");
    }

    /// <summary>Which task each CPU runs (per-CPU <c>current_task</c>, or <c>pcpu_hot.current_task</c> on 6.2+).</summary>
    private static Dictionary<ulong, int> RunningTasks(LinuxKernel kernel)
    {
        var map = new Dictionary<ulong, int>();
        if (kernel.Architecture == Arch.CpuArchitecture.Arm64)
        {
            return map; // decided per task from task->on_cpu and task->cpu (Arm64RunningCpu)
        }

        for (int cpu = 0; cpu < Math.Min(kernel.CpuCount, kernel.Machine.Cpus.Count); cpu++)
        {
            try
            {
                KernelObject current = kernel.Types.Find("current_task", Btf.BtfKind.Variable) != 0
                    ? kernel.PerCpu("current_task", cpu)
                    : kernel.PerCpu("pcpu_hot", cpu).Member("current_task");
                map.TryAdd(current.ToUInt64(), cpu);
            }
            catch (KernelDataException)
            {
                // No per-CPU data for this CPU (offline): nothing runs there.
            }
        }

        return map;
    }

    /// <summary>The kernel's 64-bit vDSO image (<c>vdso_image_64.data</c>, <c>.size</c>), or (0, 0).</summary>
    private static (ulong Data, ulong Size) VdsoImage(LinuxKernel kernel)
    {
        try
        {
            KernelObject image = kernel.Object("vdso_image_64", "struct vdso_image");
            return (image.Member("data").ToUInt64(), image.Member("size").ToUInt64());
        }
        catch (Exception e) when (e is KernelDataException or VmStateNotFoundException or ArgumentException)
        {
            return (0, 0);
        }
    }

    private static int Offset(LinuxKernel kernel, int type, string member) => (int)kernel.Types.Member(type, member).ByteOffset;

    private static bool Dumped(LinuxVma v) =>
        (v.Flags & (VmIo | VmDontdump)) == 0 && (v.File != 0 || v.AnonVma != 0 || v.Name == "[vdso]");

    // struct elf_prstatus: the same header on both (pr_pid at 32), pr_reg at 112; x86-64's is 27 quadwords, AArch64's
    // user_pt_regs 34 (include/uapi/linux/elfcore.h, arm64 asm/elf.h ELF_NGREG).
    private static ElfNote Prstatus(bool arm64, int tid, int ppid, int tgid, byte[] regs, bool fpValid)
    {
        byte[] d = new byte[arm64 ? Arm64CoreNotes.PrstatusSize : X86CoreNotes.PrstatusSize];
        int pidOffset = arm64 ? Arm64CoreNotes.PrstatusPidOffset : X86CoreNotes.PrstatusPidOffset;
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(pidOffset), tid);
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(pidOffset + 4), ppid);
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(pidOffset + 8), tgid);
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(pidOffset + 12), tgid);
        regs.CopyTo(d.AsSpan(arm64 ? Arm64CoreNotes.PrstatusRegsOffset : X86CoreNotes.PrstatusRegsOffset));
        if (arm64 && fpValid)
        {
            // pr_fpvalid: set when the thread's NT_FPREGSET follows (fs/binfmt_elf.c fill_thread_core_info).
            BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(Arm64CoreNotes.PrstatusFpvalidOffset), 1);
        }

        return new ElfNote("CORE", ElfNote.NtPrstatus, d);
    }

    private static Func<ulong, ulong, IEnumerable<(ulong, ulong, ulong)>> X86Mappings(AddressSpace space) =>
        (start, end) => space.Mappings(start, end).Select(m => (m.VirtualAddress, m.PhysicalAddress, m.Size));

    private static Func<ulong, ulong, IEnumerable<(ulong, ulong, ulong)>> Arm64Mappings(Arm64AddressSpace space) =>
        (start, end) => space.Mappings(start, end).Select(m => (m.VirtualAddress, m.PhysicalAddress, m.Size));

    /// <summary>
    /// An AArch64 thread's user registers as <c>user_pt_regs</c> (x0..x30, sp, pc, pstate): from the vCPU when the
    /// thread runs there at EL0, else from <c>task_pt_regs()</c>: the <c>struct pt_regs</c> at the top of its kernel
    /// stack (<c>stack + THREAD_SIZE − sizeof(struct pt_regs)</c>, arm64 <c>asm/processor.h</c>), whose first 34
    /// quadwords are <c>user_pt_regs</c> (<c>asm/ptrace.h</c>). The pointer-authentication signature is stripped from
    /// the link register (x30), the return address it holds.
    /// </summary>
    private static (byte[] Regs, string Source) Arm64UserRegisters(LinuxKernel kernel, KernelObject task)
    {
        byte[] r = new byte[Arm64CoreNotes.UserPtRegsCount * 8];
        int userVaBits = UserVaBits(kernel);
        if (Arm64RunningCpu(kernel, task) is int cpuIndex && kernel.Machine.Arm64Cpus[cpuIndex] is { Aarch32: false, ExceptionLevel: 0 } cpu)
        {
            for (int i = 0; i < 31; i++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(i * 8), cpu.X[i]);
            }

            BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(31 * 8), cpu.Sp);
            BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(32 * 8), cpu.Pc);
            BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(33 * 8), cpu.Pstate);
            StripReturnAddress(r, userVaBits);
            return (r, $"vCPU {cpuIndex} (running at EL0)");
        }

        int ptRegsType = kernel.Types.FindType("struct pt_regs");
        int size = (int)kernel.Types.SizeOf(ptRegsType);
        if (size < r.Length)
        {
            throw new KernelDataException("struct pt_regs", $"is {size} bytes in the kernel's BTF; AArch64's starts with the {r.Length}-byte user_pt_regs");
        }

        ulong stack = task.Member("stack").ToUInt64();
        ulong threadSize = Arm64ThreadSize(kernel);
        byte[] regs = new byte[size];
        ulong at = stack + threadSize - (ulong)size;
        if (kernel.Read(at, regs) != size)
        {
            throw new KernelDataException(at, $"kernel stack of task {task.Member("pid").ToInt64()}", $"the pt_regs at the top of its {threadSize / 1024} KiB stack are not mapped");
        }

        // PSTATE.M[4:0] = 0 is EL0t in AArch64 state: the registers a user thread entered the kernel with.
        ulong pstate = BinaryPrimitives.ReadUInt64LittleEndian(regs.AsSpan(33 * 8));
        if ((pstate & 0x1F) != 0)
        {
            throw new KernelDataException(at, $"kernel stack of task {task.Member("pid").ToInt64()}", $"no saved AArch64 user pt_regs at the top of its {threadSize / 1024} KiB stack (pstate 0x{pstate:x}; expected M[4:0] = 0, EL0t)");
        }

        regs.AsSpan(0, r.Length).CopyTo(r);
        StripReturnAddress(r, userVaBits);
        return (r, $"pt_regs at 0x{at:x} (kernel stack top, THREAD_SIZE {threadSize / 1024} KiB)");
    }

    /// <summary>
    /// THREAD_SIZE on arm64: 16 KiB (MIN_THREAD_SHIFT 14), 32 KiB with KASAN (KASAN_THREAD_SHIFT, arm64
    /// <c>asm/memory.h</c>), which the kernel's kasan_report symbol reveals.
    /// </summary>
    private static ulong Arm64ThreadSize(LinuxKernel kernel) => kernel.Symbols.TryGetAddress("kasan_report", out _) ? 32768UL : 16384UL;

    /// <summary>The CPU a task runs on right now (<c>task->on_cpu</c> set, <c>task->cpu</c> or <c>thread_info.cpu</c>), or null.</summary>
    private static int? Arm64RunningCpu(LinuxKernel kernel, KernelObject task)
    {
        if (kernel.Types.FindMember(task.TypeId, "on_cpu") is null || task.Member("on_cpu").ToInt64() == 0)
        {
            return null;
        }

        long cpu = kernel.Types.FindMember(task.TypeId, "cpu") is not null ? task.Member("cpu").ToInt64() : task.Member("thread_info.cpu").ToInt64();
        return cpu >= 0 && cpu < kernel.Machine.Arm64Cpus.Count ? (int)cpu : null;
    }

    /// <summary>User virtual address bits (64 − T0SZ of the kernel's TCR_EL1; VA_BITS when the vCPUs do not say).</summary>
    private static int UserVaBits(LinuxKernel kernel) =>
        kernel.Arm64AddressSpace is Arm64AddressSpace s && s.LowerVaBits is > 0 and <= 52 ? s.LowerVaBits : kernel.Arm64Layout?.VaBits ?? 48;

    /// <summary>The user PAC mask, bits 54..VA_BITS (arm64 <c>asm/pointer_auth.h</c> ptrauth_user_pac_mask).</summary>
    private static ulong PacMask(int vaBits) => ((1UL << 55) - 1) & ~((1UL << vaBits) - 1);

    // x30 holds a return address, signed when the code uses pointer authentication (PACIASP); user addresses have
    // zeros where the signature goes, so clearing those bits is exact for an unsigned one too.
    private static void StripReturnAddress(byte[] userPtRegs, int vaBits)
    {
        Span<byte> lr = userPtRegs.AsSpan(30 * 8, 8);
        BinaryPrimitives.WriteUInt64LittleEndian(lr, BinaryPrimitives.ReadUInt64LittleEndian(lr) & ~PacMask(vaBits));
    }

    /// <summary>
    /// The user PAC mask when the thread runs with pointer-authentication keys enabled (EnIA/EnIB/EnDA/EnDB in
    /// <c>thread.sctlr_user</c>, set by ptrauth_thread_init_user when the CPUs support it), else null.
    /// </summary>
    private static ulong? Arm64PointerAuthentication(LinuxKernel kernel, KernelObject task)
    {
        KernelObject thread = task.Member("thread");
        if (kernel.Types.FindMember(thread.TypeId, "sctlr_user") is null)
        {
            return null;
        }

        const ulong EnKeys = (1UL << 31) | (1UL << 30) | (1UL << 27) | (1UL << 13);
        return (thread.Member("sctlr_user").ToUInt64() & EnKeys) != 0 ? PacMask(UserVaBits(kernel)) : null;
    }

    /// <summary>x86-64 <c>struct elf_prpsinfo</c> (136 bytes).</summary>
    private static ElfNote Prpsinfo(KernelObject leader, int tgid, int ppid, string comm, string args)
    {
        byte[] d = new byte[PrpsinfoSize];
        uint state = (uint)leader.Member(leader.Kernel.Types.FindMember(leader.TypeId, "__state") is not null ? "__state" : "state").ToUInt64();
        char letter = ProcessList.StateLetter(state, (uint)leader.Member("exit_state").ToUInt64());
        d[0] = (byte)"RSDTtXZPI".IndexOf(letter, StringComparison.Ordinal);
        d[1] = (byte)letter;
        d[2] = (byte)(letter == 'Z' ? 1 : 0);
        d[3] = (byte)(leader.Member("static_prio").ToInt64() - 120);
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(8), leader.Member("flags").ToUInt64());
        KernelObject cred = leader.Member("real_cred");
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(16), (uint)cred.Member("uid.val").ToUInt64());
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(20), (uint)cred.Member("gid.val").ToUInt64());
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(24), tgid);
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(28), ppid);
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(32), tgid);
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(36), tgid);
        byte[] name = Encoding.UTF8.GetBytes(comm);
        name.AsSpan(0, Math.Min(name.Length, 15)).CopyTo(d.AsSpan(40));
        byte[] psargs = Encoding.UTF8.GetBytes(args);
        psargs.AsSpan(0, Math.Min(psargs.Length, 79)).CopyTo(d.AsSpan(56));
        return new ElfNote("CORE", NtPrpsinfo, d);
    }

    /// <summary><c>mm->saved_auxv</c> up to and including AT_NULL.</summary>
    private static byte[] Auxv(KernelObject mm)
    {
        byte[] all = mm.Member("saved_auxv").ReadBytes();
        int len = 0;
        while (len + 16 <= all.Length)
        {
            ulong type = BinaryPrimitives.ReadUInt64LittleEndian(all.AsSpan(len));
            len += 16;
            if (type == 0)
            {
                break;
            }
        }

        return all[..len];
    }

    /// <summary>NT_FILE: count, page size, (start, end, file offset in pages) per file mapping, then the names.</summary>
    private static byte[] FileNote(IReadOnlyList<LinuxVma> vmas)
    {
        var files = vmas.Where(v => v.File != 0).ToList();
        using var ms = new MemoryStream();
        byte[] q = new byte[8];
        void Put(ulong value)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(q, value);
            ms.Write(q);
        }

        Put((ulong)files.Count);
        Put(PageSize);
        foreach (LinuxVma v in files)
        {
            Put(v.Start);
            Put(v.End);
            Put(v.Offset / PageSize);
        }

        foreach (LinuxVma v in files)
        {
            ms.Write(Encoding.UTF8.GetBytes(v.Name));
            ms.WriteByte(0);
        }

        return ms.ToArray();
    }

}
