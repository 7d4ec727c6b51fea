using System.Globalization;

namespace VmState.Linux;

/// <summary>
/// Task lookup by pid, named after drgn's <c>find_task</c> (<c>drgn/helpers/linux/pid.py</c>; the kernel's
/// <c>find_task_by_pid_ns</c> in <c>kernel/pid.c</c>). It walks every thread (<see cref="KernelTasks.ForEachTask"/>),
/// which needs no knowledge of the pid hash or IDR layout.
/// </summary>
public static class KernelPids
{
    /// <summary>The task with pid <paramref name="pid"/> (any thread; its thread group shares the mm).</summary>
    /// <exception cref="VmStateNotFoundException">No such task (<see cref="VmStateObjectKind.Process"/>).</exception>
    /// <exception cref="KernelDataException">A corrupt task list.</exception>
    public static KernelObject FindTask(this LinuxKernel kernel, int pid)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        foreach (KernelObject t in kernel.ForEachTask())
        {
            if (t.Member("pid").ToInt64() == pid)
            {
                return t;
            }
        }

        throw new VmStateNotFoundException(VmStateObjectKind.Process, pid.ToString(CultureInfo.InvariantCulture), $"task list: no task has pid {pid}");
    }
}
