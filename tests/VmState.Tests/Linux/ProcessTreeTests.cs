using VmState.Linux;

namespace VmState.Tests.Linux;

/// <summary><see cref="ProcessTree"/> on hand-made process lists, hostile ones included.</summary>
public sealed class ProcessTreeTests
{
    private static LinuxProcess P(int pid, int ppid) => new(pid, pid, ppid, 0, 0, 'S', $"p{pid}", $"p{pid}", 0, false, 0, 1, null);

    private static string Shape(IReadOnlyList<ProcessTreeNode> nodes) =>
        string.Join(" ", nodes.Select(n => n.Children.Count == 0 ? $"{n.Process.Pid}" : $"{n.Process.Pid}({Shape(n.Children)})"));

    [Fact]
    public void RootsAndChildrenAreOrderedByPid()
    {
        LinuxProcess[] list = [P(300, 1), P(2, 0), P(1, 0), P(100, 1), P(3, 2), P(101, 100)];
        Assert.Equal("1(100(101) 300) 2(3)", Shape(ProcessTree.Build(list)));
    }

    [Fact]
    public void AnOrphanOrItsOwnParentIsARoot()
    {
        LinuxProcess[] list = [P(1, 0), P(50, 49), P(60, 60), P(61, 60)];
        Assert.Equal("1 50 60(61)", Shape(ProcessTree.Build(list)));
    }

    [Fact]
    public void RepeatedPidsArePlacedOnceSoAParentLoopCannotGrowTheTree()
    {
        // Two tasks with pid 5 and one with pid 6 whose parent is 5: 5 → 6 → 5 → 6 ... if nodes were repeated.
        LinuxProcess a = P(5, 1), b = P(5, 6) with { Comm = "dup" }, c = P(6, 5);
        IReadOnlyList<ProcessTreeNode> roots = ProcessTree.Build([P(1, 0), a, b, c]);
        Assert.Equal("1(5(6(5)))", Shape(roots));
        Assert.Equal(4, Count(roots));

        // Many tasks sharing a pid and parenting each other stay one node each.
        LinuxProcess[] swarm = [P(1, 0), .. Enumerable.Range(0, 40).Select(i => P(7, i % 2 == 0 ? 1 : 7)), .. Enumerable.Range(0, 40).Select(_ => P(8, 7))];
        Assert.Equal(swarm.Length, Count(ProcessTree.Build(swarm)));
    }

    [Fact]
    public void PidZeroIsNeverAParent()
    {
        LinuxProcess[] list = [P(0, 0), P(1, 0), P(2, 0)];
        Assert.Equal("0 1 2", Shape(ProcessTree.Build(list)));
    }

    [Fact]
    public void AVeryLongChainStopsAtTheMaximumDepth()
    {
        LinuxProcess[] chain = [.. Enumerable.Range(1, 1000).Select(i => P(i, i - 1))];
        ProcessTreeNode node = Assert.Single(ProcessTree.Build(chain));
        int depth = 0;
        while (node.Children.Count > 0)
        {
            node = Assert.Single(node.Children);
            depth++;
        }

        Assert.Equal(ProcessTree.MaxDepth, depth);
    }

    private static int Count(IReadOnlyList<ProcessTreeNode> nodes) => nodes.Sum(n => 1 + Count(n.Children));
}
