using System.Text;

namespace VmState.Linux;

/// <summary>The process view (<c>vmstate ps</c>): every task's identity, credentials, state and command line.</summary>
public static class ProcessList
{
    /// <summary>Bounds the argument vector read (the kernel's own /proc/PID/cmdline reads it in pages; ps truncates anyway).</summary>
    private const int MaxCmdline = 4096;

    /// <summary>
    /// The processes (thread-group leaders, as <c>for_each_process</c> walks them), or with
    /// <paramref name="threads"/> every thread; sorted by pid. <paramref name="cmdline"/> reads each process's
    /// argument vector through its own page tables.
    /// </summary>
    /// <exception cref="KernelDataException">A corrupt task list or an unreadable task.</exception>
    public static IReadOnlyList<LinuxProcess> Read(LinuxKernel kernel, bool threads = false, bool cmdline = true)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        int taskType = kernel.Types.FindType("struct task_struct");
        string stateMember = kernel.Types.FindMember(taskType, "__state") is not null ? "__state" : "state";
        string startMember = kernel.Types.FindMember(taskType, "start_boottime") is not null ? "start_boottime" : "start_time";
        var names = new TaskName(kernel, taskType);
        var list = new List<LinuxProcess>();
        IEnumerable<KernelObject> tasks = threads ? kernel.ForEachTask() : kernel.ForEachProcess();
        foreach (KernelObject task in tasks)
        {
            list.Add(Describe(kernel, names, task, stateMember, startMember, cmdline));
        }

        list.Sort((a, b) => a.Pid.CompareTo(b.Pid));
        return list;
    }

    /// <summary>
    /// The <c>ps</c> state letter of a task: Linux 6.1 <c>__task_state_index</c> (<c>include/linux/sched.h</c>) over
    /// "RSDTtXZPI" (<c>fs/proc/array.c task_state_array</c>). A task waiting on an RT lock and a frozen task
    /// (<c>TASK_FROZEN</c>, 6.1+) are D, as kernels with upstream f718faf3940e (6.13; 6.12.8) report them; 6.1's
    /// freezer rewrite had shown frozen tasks as R.
    /// </summary>
    public static char StateLetter(uint state, uint exitState)
    {
        const uint TaskReport = 0x7F;          // RUNNING..PARKED
        const uint TaskIdle = 0x402;           // TASK_UNINTERRUPTIBLE | TASK_NOLOAD
        const uint TaskRtlockWait = 0x1000;
        const uint TaskFrozen = 0x8000;
        const uint TaskReportIdle = TaskReport + 1;
        uint s = (state | exitState) & TaskReport;
        if ((state & TaskIdle) == TaskIdle)
        {
            s = TaskReportIdle;
        }

        if ((state & (TaskRtlockWait | TaskFrozen)) != 0)
        {
            s = 2; // reported as TASK_UNINTERRUPTIBLE
        }

        int index = s == 0 ? 0 : 32 - System.Numerics.BitOperations.LeadingZeroCount(s);
        return "RSDTtXZPI"[Math.Min(index, 8)];
    }

    private static LinuxProcess Describe(LinuxKernel kernel, TaskName names, KernelObject task, string stateMember, string startMember, bool wantCmdline)
    {
        int pid = (int)task.Member("pid").ToInt64();
        int tgid = (int)task.Member("tgid").ToInt64();
        string comm = task.Member("comm").ReadString();
        ulong flags = task.Member("flags").ToUInt64();
        KernelObject parent = task.Member("real_parent");
        int ppid = parent.IsNull ? 0 : (int)parent.Member("tgid").ToInt64();
        KernelObject cred = task.Member("real_cred");
        uint uid = (uint)cred.Member("uid.val").ToUInt64();
        uint gid = (uint)cred.Member("gid.val").ToUInt64();
        char state = StateLetter((uint)task.Member(stateMember).ToUInt64(), (uint)task.Member("exit_state").ToUInt64());
        ulong start = task.Member(startMember).ToUInt64();
        int threads = (int)task.Member("signal").Member("nr_threads").ToInt64();
        bool kthread = (flags & TaskName.PfKthread) != 0;
        string? cmdline = null;
        if (wantCmdline && !kthread)
        {
            KernelObject mm = task.Member("mm");
            if (!mm.IsNull)
            {
                cmdline = Cmdline(kernel, mm);
            }
        }

        return new LinuxProcess(pid, tgid, ppid, uid, gid, state, comm, names.Of(task, flags, comm), task.Address, kthread, start, threads, cmdline);
    }

    /// <summary>
    /// The bytes of [mm-&gt;<paramref name="startMember"/>, mm-&gt;<paramref name="endMember"/>) as the process's page
    /// tables map them (at most <paramref name="max"/>), as <c>/proc/PID/cmdline</c> and <c>environ</c> give them: up to
    /// the first page that is not in memory; empty when the range is empty.
    /// </summary>
    internal static byte[] UserRange(LinuxKernel kernel, KernelObject mm, string startMember, string endMember, int max)
    {
        ulong start = mm.Member(startMember).ToUInt64();
        ulong end = mm.Member(endMember).ToUInt64();
        if (end <= start)
        {
            return [];
        }

        byte[] buf = new byte[(int)Math.Min(end - start, (ulong)max)];
        int n = kernel.ReadUser(mm.Member("pgd").ToUInt64(), start, buf);
        return n == buf.Length ? buf : buf[..n];
    }

    /// <summary>[mm->arg_start, mm->arg_end) read through the process's page tables (mm->pgd); NULs become spaces.</summary>
    internal static string? Cmdline(LinuxKernel kernel, KernelObject mm)
    {
        ulong start = mm.Member("arg_start").ToUInt64();
        ulong end = mm.Member("arg_end").ToUInt64();
        if (end <= start)
        {
            return null;
        }

        byte[] buf = new byte[(int)Math.Min(end - start, MaxCmdline)];
        int n = kernel.ReadUser(mm.Member("pgd").ToUInt64(), start, buf);
        if (n == 0)
        {
            return null;
        }

        ReadOnlySpan<byte> args = buf.AsSpan(0, n).TrimEnd((byte)0);
        var sb = new StringBuilder(Encoding.UTF8.GetString(args));
        sb.Replace('\0', ' ');
        return sb.ToString();
    }
}
