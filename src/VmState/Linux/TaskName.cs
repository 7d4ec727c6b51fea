using System.Globalization;
using VmState.Linux.Btf;

namespace VmState.Linux;

/// <summary>
/// A task's name as the guest's own <c>/proc/PID/status</c> (Name:), <c>/proc/PID/stat</c> and <c>ps</c> show it:
/// Linux <c>fs/proc/array.c proc_task_name</c>. A workqueue worker (PF_WQ_WORKER) is named by
/// <c>kernel/workqueue.c wq_worker_comm</c>: its comm (from 6.10, <c>format_worker_id</c>'s full id, e.g.
/// <c>kworker/R-&lt;workqueue&gt;</c> for a rescuer) followed, while it is attached to a pool and has a description,
/// by "+desc" while it runs a work item and "-desc" otherwise. Another kernel thread (PF_KTHREAD) is named by
/// <c>kernel/kthread.c get_kthread_comm</c>: the kthread's <c>full_name</c> when set (names longer than comm's 15
/// characters), else comm. Every other task is its comm.
/// </summary>
/// <remarks>
/// Layouts come from the guest's BTF (<c>struct kthread</c>, <c>struct worker</c>, <c>struct worker_pool</c>,
/// <c>struct workqueue_struct</c>); a type or member this kernel does not have, or memory that cannot be read,
/// leaves the name at comm, as the kernel itself falls back to comm when a kthread has no full name. The result is
/// bounded as the kernel's 64-byte buffer bounds it (63 characters) and, like <c>/proc/PID/stat</c>, not escaped
/// (<c>/proc/PID/status</c> escapes '\n' and '\\').
/// </remarks>
internal sealed class TaskName
{
    /// <summary>PF_WQ_WORKER (Linux <c>include/linux/sched.h</c>; 0x20 in 6.1 and 6.12).</summary>
    internal const ulong PfWqWorker = 0x0000_0020;

    /// <summary>PF_KTHREAD (Linux <c>include/linux/sched.h</c>; 0x00200000 in 6.1 and 6.12).</summary>
    internal const ulong PfKthread = 0x0020_0000;

    /// <summary>proc_task_name's <c>char tcomm[64]</c>: at most 63 characters.</summary>
    private const int MaxName = 63;

    private readonly LinuxKernel _kernel;
    private readonly string? _kthreadMember;
    private readonly int _kthreadType = -1;
    private readonly int _workerType = -1;
    private readonly bool _fullName;
    private readonly bool _workerDesc;
    private readonly bool _formatWorkerId;

    /// <summary>Looks the layouts up once for every task of <paramref name="kernel"/>.</summary>
    internal TaskName(LinuxKernel kernel, int taskType)
    {
        _kernel = kernel;
        BtfTypes types = kernel.Types;

        // to_kthread (kernel/kthread.c): task->worker_private from 5.17, (void *)task->set_child_tid before.
        _kthreadMember = types.FindMember(taskType, "worker_private") is not null ? "worker_private"
            : types.FindMember(taskType, "set_child_tid") is not null ? "set_child_tid" : null;
        _kthreadType = TryType(types, "struct kthread");
        if (_kthreadType < 0 || types.FindMember(_kthreadType, "data") is null)
        {
            _kthreadMember = null;
        }

        _fullName = _kthreadType >= 0 && types.FindMember(_kthreadType, "full_name") is not null;
        _workerType = TryType(types, "struct worker");
        _workerDesc = _workerType >= 0
            && types.FindMember(_workerType, "pool") is not null
            && types.FindMember(_workerType, "desc") is not null
            && types.FindMember(_workerType, "current_work") is not null;

        // Linux 6.10 (2a1b02bcba78, "workqueue: Refactor worker ID formatting and make wq_worker_comm() use full ID
        // string") builds a worker's name with format_worker_id from its id instead of its 15-character comm. The
        // layout does not change with it; the function's own symbol tells (a static function kallsyms lists, as on
        // Debian's 6.12; were it inlined, the name would be built from comm, which differs only when the id is
        // longer than 15 characters).
        _formatWorkerId = _workerDesc && kernel.Symbols.Find("format_worker_id") is not null
            && types.FindMember(_workerType, "id") is not null
            && types.FindMember(_workerType, "rescue_wq") is not null;
    }

    /// <summary>The /proc name of <paramref name="task"/>, whose flags and comm are already read.</summary>
    internal string Of(KernelObject task, ulong flags, string comm)
    {
        try
        {
            if ((flags & PfWqWorker) != 0)
            {
                return Bound(WorkerName(task, comm));
            }

            if ((flags & PfKthread) != 0 && _fullName && Kthread(task) is KernelObject kthread)
            {
                KernelObject fullName = kthread.Member("full_name");
                if (!fullName.IsNull)
                {
                    return _kernel.ReadCString(fullName.ToUInt64(), MaxName, $"{fullName.Expression} of pid {task.Member("pid").ToInt64()}");
                }
            }
        }
        catch (KernelDataException)
        {
            // An unreadable kthread or worker: the name stays the comm the task itself holds.
        }

        return comm;
    }

    /// <summary>wq_worker_comm (kernel/workqueue.c).</summary>
    private string WorkerName(KernelObject task, string comm)
    {
        if (!_workerDesc || Kthread(task) is not KernelObject kthread)
        {
            return comm;
        }

        ulong data = kthread.Member("data").ToUInt64();
        if (data == 0)
        {
            return comm;
        }

        KernelObject worker = _kernel.ObjectAt(data, _workerType);
        KernelObject pool = worker.Member("pool");
        string name = _formatWorkerId ? FormatWorkerId(worker, pool) : comm;
        if (!pool.IsNull)
        {
            string desc = worker.Member("desc").ReadString();
            if (desc.Length > 0)
            {
                name += (worker.Member("current_work").ToUInt64() != 0 ? "+" : "-") + desc;
            }
        }

        return name;
    }

    /// <summary>format_worker_id (kernel/workqueue.c, 6.10+).</summary>
    private static string FormatWorkerId(KernelObject worker, KernelObject pool)
    {
        KernelObject rescueWq = worker.Member("rescue_wq");
        if (!rescueWq.IsNull)
        {
            return "kworker/R-" + rescueWq.Member("name").ReadString();
        }

        if (pool.IsNull)
        {
            return "kworker/dying";
        }

        long id = worker.Member("id").ToInt64();
        long cpu = pool.Member("cpu").ToInt64();
        return cpu >= 0
            ? string.Create(CultureInfo.InvariantCulture, $"kworker/{cpu}:{id}{(pool.Member("attrs").Member("nice").ToInt64() < 0 ? "H" : string.Empty)}")
            : string.Create(CultureInfo.InvariantCulture, $"kworker/u{pool.Member("id").ToInt64()}:{id}");
    }

    /// <summary>to_kthread (kernel/kthread.c): the task's struct kthread, or null when it has none.</summary>
    private KernelObject? Kthread(KernelObject task)
    {
        if (_kthreadMember is null)
        {
            return null;
        }

        ulong p = task.Member(_kthreadMember).ToUInt64();
        return p == 0 ? null : _kernel.ObjectAt(p, _kthreadType);
    }

    private static string Bound(string name) => name.Length <= MaxName ? name : name[..MaxName];

    private static int TryType(BtfTypes types, string spelling)
    {
        try
        {
            return types.FindType(spelling);
        }
        catch (VmStateNotFoundException)
        {
            return -1;
        }
    }
}
