namespace VmState.History;

/// <summary>A process as a capture's index keeps it (a thread-group leader of the task list).</summary>
/// <param name="Pid">The process id (tgid).</param>
/// <param name="Ppid">The parent's process id.</param>
/// <param name="Uid">The real uid.</param>
/// <param name="Comm">task->comm.</param>
/// <param name="Name">The name /proc shows (see <see cref="Linux.LinuxProcess.Name"/>).</param>
/// <param name="StartTimeNs">Start time in nanoseconds since boot: with <paramref name="Pid"/> it tells a process from a later one that reuses the pid.</param>
/// <param name="IsKernelThread">A kernel thread.</param>
public sealed record HistoryProcess(int Pid, int Ppid, uint Uid, string Comm, string Name, ulong StartTimeNs, bool IsKernelThread)
{
    /// <summary>True when <paramref name="nameOrPid"/> is this process's pid (all digits) or its comm or /proc name.</summary>
    public bool Matches(string nameOrPid)
    {
        ArgumentNullException.ThrowIfNull(nameOrPid);
        return int.TryParse(nameOrPid, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid)
            ? pid == Pid
            : string.Equals(Comm, nameOrPid, StringComparison.Ordinal) || string.Equals(Name, nameOrPid, StringComparison.Ordinal);
    }
}
