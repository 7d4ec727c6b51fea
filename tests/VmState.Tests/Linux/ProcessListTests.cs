using VmState.Linux;

namespace VmState.Tests.Linux;

/// <summary>The process view over the synthetic kernel, and corrupt task lists that must end with a clear error.</summary>
public class ProcessListTests
{
    [Fact]
    public void ProcessesAsPsShowsThem()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);

        IReadOnlyList<LinuxProcess> ps = ProcessList.Read(k);

        Assert.Equal([1, 2, 3, 100, 200], ps.Select(p => p.Pid));
        Assert.Equal([0, 0, 2, 1, 1], ps.Select(p => p.Ppid));
        Assert.Equal(["init", "kthreadd", "kworker/0:0", "worker", "zombie"], ps.Select(p => p.Comm));
        Assert.Equal("SSIRZ", new string([.. ps.Select(p => p.State)]));
        Assert.Equal([0u, 0u, 0u, 1000u, 0u], ps.Select(p => p.Uid));
        Assert.Equal(1001u, ps[3].Gid);
        Assert.Equal([false, true, true, false, false], ps.Select(p => p.IsKernelThread));
        Assert.Equal("/sbin/init splash", ps[0].Cmdline);
        Assert.Null(ps[1].Cmdline);
        Assert.Null(ps[4].Cmdline);
        Assert.Equal(2, ps[3].Threads);
        Assert.Equal(100_000_000UL, ps[0].StartTimeNs);
        Assert.Equal(s.Tasks[100], ps[3].TaskAddress);
    }

    [Fact]
    public void ThreadsAreListedWithTheirGroup()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);

        IReadOnlyList<LinuxProcess> ps = ProcessList.Read(k, threads: true, cmdline: false);

        Assert.Equal([1, 2, 3, 100, 101, 200], ps.Select(p => p.Pid));
        LinuxProcess t = ps.Single(p => p.Pid == 101);
        Assert.Equal((100, 1, 'D', "worker-t"), (t.Tgid, t.Ppid, t.State, t.Comm));
        Assert.All(ps, p => Assert.Null(p.Cmdline));
    }

    [Fact]
    public void ALoopThatMissesTheHeadIsReportedNotWalkedForever()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);
        s.WriteU64(s.Tasks[100] + SyntheticLinux.TaskTasks, s.Tasks[2] + SyntheticLinux.TaskTasks);

        KernelDataException e = Assert.Throws<KernelDataException>(() => ProcessList.Read(k));

        Assert.Contains("loops", e.Message, StringComparison.Ordinal);
        Assert.Contains("init_task.tasks", e.Message, StringComparison.Ordinal);
        Assert.Contains(e.Address, new ulong?[] { s.Tasks[2] + SyntheticLinux.TaskTasks, s.Tasks[3] + SyntheticLinux.TaskTasks, s.Tasks[100] + SyntheticLinux.TaskTasks });
    }

    [Fact]
    public void WildAndNullNextPointersAreReported()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);
        ulong wild = s.PageOffsetBase + (3UL << 30);
        s.WriteU64(s.Tasks[2] + SyntheticLinux.TaskTasks, wild);

        KernelDataException e = Assert.Throws<KernelDataException>(() => k.ForEachProcess().ToList());
        Assert.Contains("not mapped", e.Message, StringComparison.Ordinal);
        Assert.Equal(wild, e.Address);

        s.WriteU64(s.Tasks[2] + SyntheticLinux.TaskTasks, 0);
        Assert.Contains("NULL next pointer", Assert.Throws<KernelDataException>(() => k.ForEachProcess().ToList()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WalksAreBounded()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);
        ulong head = s.InitTask + SyntheticLinux.TaskTasks;

        Assert.Equal(5, k.ListForEach(head).Count());
        Assert.Contains("more than 2 entries", Assert.Throws<KernelDataException>(() => k.ListForEach(head, "tasks", maxEntries: 2).ToList()).Message, StringComparison.Ordinal);
        Assert.False(k.ListEmpty(k.Object("init_task").Member("tasks")));
    }

    [Fact]
    public void ForEachThreadUsesTheSignalThreadList()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);

        KernelObject leader = k.ObjectAt(s.Tasks[100], "struct task_struct");

        Assert.Equal([100L, 101L], k.ForEachThread(leader).Select(t => t.Member("pid").ToInt64()));
        Assert.Equal(6, k.ForEachTask().Count());
    }

    [Theory]
    [InlineData(0u, 0u, 'R')]
    [InlineData(1u, 0u, 'S')]
    [InlineData(2u, 0u, 'D')]
    [InlineData(4u, 0u, 'T')]
    [InlineData(8u, 0u, 't')]
    [InlineData(0x80u, 0x10u, 'X')]
    [InlineData(0x80u, 0x20u, 'Z')]
    [InlineData(0x40u, 0u, 'P')]
    [InlineData(0x402u, 0u, 'I')]
    [InlineData(0x1000u, 0u, 'D')]
    [InlineData(0x8000u, 0u, 'D')] // TASK_FROZEN (the freezer keeps the old state in saved_state)
    [InlineData(0x101u, 0u, 'S')]
    public void StateLettersFollowTheKernelsTaskStateIndex(uint state, uint exitState, char letter) =>
        Assert.Equal(letter, ProcessList.StateLetter(state, exitState));
}
