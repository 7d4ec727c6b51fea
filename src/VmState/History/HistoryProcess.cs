using VmState.Views;

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
    /// <summary>How a list of these is shown (the CLI's JSON, other front ends).</summary>
    public static ListView<HistoryProcess> View { get; } = new(
        [
            new("pid", FieldKind.Integer, p => p.Pid),
            new("ppid", FieldKind.Integer, p => p.Ppid),
            new("uid", FieldKind.Integer, p => p.Uid),
            new("comm", FieldKind.Text, p => p.Comm),
            new("name", FieldKind.Text, p => p.Name),
            new("startTimeNs", FieldKind.Integer, p => p.StartTimeNs),
            new("kernelThread", FieldKind.Boolean, p => p.IsKernelThread),
        ],
        [
            new("PID", 7, p => p.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("PPID", 7, p => p.Ppid.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("UID", 6, p => p.Uid.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("NAME", 0, p => p.Name),
        ]);

    /// <summary>True when <paramref name="nameOrPid"/> is this process's pid (all digits) or its comm or /proc name.</summary>
    public bool Matches(string nameOrPid)
    {
        ArgumentNullException.ThrowIfNull(nameOrPid);
        return int.TryParse(nameOrPid, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid)
            ? pid == Pid
            : string.Equals(Comm, nameOrPid, StringComparison.Ordinal) || string.Equals(Name, nameOrPid, StringComparison.Ordinal);
    }
}
