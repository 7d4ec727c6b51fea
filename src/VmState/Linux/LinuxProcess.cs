namespace VmState.Linux;

/// <summary>One task as <c>ps</c> shows it (fields as <c>fs/proc/array.c</c> derives them).</summary>
/// <param name="Pid">task->pid (the thread id, global namespace).</param>
/// <param name="Tgid">task->tgid (the process id).</param>
/// <param name="Ppid">task->real_parent->tgid (0 for pid 1 and 2, whose parent is the idle task).</param>
/// <param name="Uid">task->real_cred->uid (the real uid /proc/PID/status shows first).</param>
/// <param name="Gid">task->real_cred->gid.</param>
/// <param name="State">State letter R, S, D, T, t, X, Z, P or I (<c>task_state_to_char</c>).</param>
/// <param name="Comm">task->comm (at most 15 characters).</param>
/// <param name="Name">
/// The name the guest's own /proc/PID/status, /proc/PID/stat and <c>ps</c> show (<c>proc_task_name</c>): a workqueue
/// worker's comm with its workqueue ("kworker/0:1-events" idle, "kworker/u8:1+flush-8:0" running a work item), a
/// kernel thread's full name when longer than comm, else comm.
/// </param>
/// <param name="TaskAddress">Virtual address of the task_struct.</param>
/// <param name="IsKernelThread">PF_KTHREAD is set.</param>
/// <param name="StartTimeNs">Start time in nanoseconds since boot (start_boottime, else start_time).</param>
/// <param name="Threads">signal->nr_threads: threads in the group.</param>
/// <param name="Cmdline">The argument vector from the process's memory joined with spaces; null for kernel threads, when not asked for, or when the pages are not in memory.</param>
public sealed record LinuxProcess(int Pid, int Tgid, int Ppid, uint Uid, uint Gid, char State, string Comm, string Name, ulong TaskAddress,
    bool IsKernelThread, ulong StartTimeNs, int Threads, string? Cmdline);
