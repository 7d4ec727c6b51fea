namespace VmState.Linux;

/// <summary>
/// Task iteration helpers named after the kernel's macros (Linux <c>include/linux/sched/signal.h</c>:
/// <c>for_each_process</c>, <c>for_each_thread</c>, <c>for_each_process_thread</c>; drgn calls the last one
/// <c>for_each_task</c>).
/// </summary>
public static class KernelTasks
{
    /// <summary>
    /// <c>for_each_process</c>: every thread-group leader on <c>init_task.tasks</c>, excluding <c>init_task</c>
    /// itself (the idle task, pid 0), as the kernel's macro does.
    /// </summary>
    /// <exception cref="KernelDataException">A corrupt list (see <see cref="KernelList.ListForEach"/>).</exception>
    public static IEnumerable<KernelObject> ForEachProcess(this LinuxKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        KernelObject tasks = kernel.Object("init_task").Member("tasks");
        return kernel.ListForEachEntry(tasks, "struct task_struct", "tasks");
    }

    /// <summary>
    /// <c>for_each_thread</c>: every thread of <paramref name="task"/>'s thread group, the leader included:
    /// <c>signal->thread_head</c> linked through <c>thread_node</c> (3.14+), else the older <c>thread_group</c> ring.
    /// </summary>
    /// <exception cref="KernelDataException">A corrupt list.</exception>
    public static IEnumerable<KernelObject> ForEachThread(this LinuxKernel kernel, KernelObject task)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(task);
        int taskType = kernel.Types.FindType("struct task_struct");
        if (kernel.Types.FindMember(taskType, "thread_node") is not null)
        {
            KernelObject head = task.Member("signal").Member("thread_head");
            return kernel.ListForEachEntry(head, "struct task_struct", "thread_node");
        }

        // Before 3.14 (and still in 6.1 next to thread_node): a ring through thread_group with no separate head.
        return ThreadGroupRing(kernel, task);
    }

    /// <summary>
    /// The task running on <paramref name="cpu"/> (the kernel's <c>current</c>): per-CPU <c>current_task</c>, or
    /// <c>pcpu_hot.current_task</c> on the kernels (about 6.2 to 6.14) that moved it into <c>pcpu_hot</c> (x86
    /// <c>asm/current.h</c>); on AArch64, SP_EL0 of a vCPU at EL1 (<c>arm64 asm/current.h</c>).
    /// </summary>
    /// <exception cref="KernelDataException">The per-CPU area or the pointer cannot be read.</exception>
    public static KernelObject CurrentTask(this LinuxKernel kernel, int cpu)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (kernel.CurrentTaskFromCpuState(cpu) is ulong task)
        {
            return kernel.ObjectAt(task, "struct task_struct");
        }

        return kernel.Symbols.TryGetAddress("current_task", out _)
            ? kernel.PerCpu("current_task", cpu).Deref()
            : kernel.PerCpu("pcpu_hot", cpu).Member("current_task").Deref();
    }

    /// <summary><c>for_each_process_thread</c> (drgn's <c>for_each_task</c>): every thread of every process.</summary>
    /// <exception cref="KernelDataException">A corrupt list.</exception>
    public static IEnumerable<KernelObject> ForEachTask(this LinuxKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        foreach (KernelObject p in kernel.ForEachProcess())
        {
            foreach (KernelObject t in kernel.ForEachThread(p))
            {
                yield return t;
            }
        }
    }

    private static IEnumerable<KernelObject> ThreadGroupRing(LinuxKernel kernel, KernelObject task)
    {
        yield return task;
        KernelObject ring = task.Member("thread_group");
        foreach (KernelObject t in kernel.ListForEachEntry(ring, "struct task_struct", "thread_group"))
        {
            yield return t;
        }
    }
}
