namespace VmState.Linux;

/// <summary>A process in a <see cref="ProcessTree"/> and the processes it is the parent of.</summary>
/// <param name="Process">The process.</param>
/// <param name="Children">Its children, by pid; empty below <see cref="ProcessTree.MaxDepth"/>.</param>
public sealed record ProcessTreeNode(LinuxProcess Process, IReadOnlyList<ProcessTreeNode> Children);

/// <summary>
/// Processes as a tree of parents and children, as <c>pstree</c> shows them: a process whose parent is not in the
/// list (or is itself) is a root; roots and children are ordered by pid.
/// </summary>
/// <remarks>
/// Guest data is hostile: each process is placed once (a task list with repeated pids or a parent loop cannot make
/// the tree grow without bound), pid 0 is never a parent, and the tree stops at <see cref="MaxDepth"/> levels.
/// </remarks>
public static class ProcessTree
{
    /// <summary>The depth (roots are at 0) whose nodes get no children.</summary>
    public const int MaxDepth = 256;

    /// <summary>The roots of the tree of <paramref name="processes"/>.</summary>
    public static IReadOnlyList<ProcessTreeNode> Build(IReadOnlyList<LinuxProcess> processes)
    {
        ArgumentNullException.ThrowIfNull(processes);
        var pids = processes.Select(p => p.Pid).ToHashSet();
        ILookup<int, LinuxProcess> children = processes.ToLookup(p => pids.Contains(p.Ppid) && p.Ppid != p.Pid ? p.Ppid : 0);
        var placed = new HashSet<LinuxProcess>(ReferenceEqualityComparer.Instance);
        return Level(children[0], children, placed, 0);
    }

    private static List<ProcessTreeNode> Level(IEnumerable<LinuxProcess> members, ILookup<int, LinuxProcess> children, HashSet<LinuxProcess> placed, int depth)
    {
        var nodes = new List<ProcessTreeNode>();
        foreach (LinuxProcess p in members.OrderBy(p => p.Pid))
        {
            if (!placed.Add(p))
            {
                continue;
            }

            IReadOnlyList<ProcessTreeNode> kids = depth < MaxDepth && p.Pid != 0 ? Level(children[p.Pid], children, placed, depth + 1) : [];
            nodes.Add(new ProcessTreeNode(p, kids));
        }

        return nodes;
    }
}
