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
    public void NamesAreTheGuestsProcNames()
    {
        var s = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(s.Machine);

        // kworker/0:0 (pid 3) becomes a workqueue worker (PF_WQ_WORKER) of pool CPU 0 that last ran "events".
        ulong t = s.Tasks[3], kthread = t + 0x200, worker = t + 0x300, pool = t + 0x380, attrs = t + 0x3c0;
        s.WriteU32(t + SyntheticLinux.TaskFlags, 0x00200040u | 0x20u);
        s.WriteU64(t + SyntheticLinux.TaskWorkerPrivate, kthread);
        s.WriteU64(kthread + SyntheticLinux.KthreadData, worker);
        s.WriteU64(worker + SyntheticLinux.WorkerPool, pool);
        s.WriteU64(pool + SyntheticLinux.PoolAttrs, attrs);
        s.WriteVirtual(worker + SyntheticLinux.WorkerDesc, "events\0"u8);
        s.WriteU32(worker + SyntheticLinux.WorkerId, 1234); // before 6.10 (no format_worker_id) the id is not read: comm is

        // kthreadd (pid 2) gets a full name longer than comm's 15 characters.
        ulong kthreadd = s.Tasks[2], full = kthreadd + 0x400;
        s.WriteU64(kthreadd + SyntheticLinux.TaskWorkerPrivate, kthreadd + 0x200);
        s.WriteU64(kthreadd + 0x200 + SyntheticLinux.KthreadFullName, full);
        s.WriteVirtual(full, "kthreadd-with-a-longer-name\0"u8);

        // A user task is its comm, whatever its worker_private (io_uring and vhost workers use it) points at.
        s.WriteU64(s.Tasks[1] + SyntheticLinux.TaskWorkerPrivate, kthreadd + 0x200);

        LinuxProcess Get(int pid) => ProcessList.Read(k, threads: true, cmdline: false).Single(p => p.Pid == pid);

        Assert.Equal(("kworker/0:0-events", "kworker/0:0"), (Get(3).Name, Get(3).Comm));
        Assert.Equal(("kthreadd-with-a-longer-name", "kthreadd"), (Get(2).Name, Get(2).Comm));
        Assert.Equal(("init", "init"), (Get(1).Name, Get(1).Comm));
        Assert.Equal(("worker-t", "worker-t"), (Get(101).Name, Get(101).Comm));

        // Running a work item: '+'.
        s.WriteU64(worker + SyntheticLinux.WorkerCurrentWork, s.PageOffsetBase + 0x1234);
        Assert.Equal("kworker/0:0+events", Get(3).Name);

        // No description yet, or no pool (detached): comm.
        s.WriteVirtual(worker + SyntheticLinux.WorkerDesc, "\0"u8);
        Assert.Equal("kworker/0:0", Get(3).Name);
        s.WriteVirtual(worker + SyntheticLinux.WorkerDesc, "events\0"u8);
        s.WriteU64(worker + SyntheticLinux.WorkerPool, 0);
        Assert.Equal("kworker/0:0", Get(3).Name);

        // The kernel's 64-byte buffer bounds the name; a NULL full name is comm.
        s.WriteVirtual(full, System.Text.Encoding.ASCII.GetBytes(new string('k', 100) + "\0"));
        Assert.Equal(new string('k', 63), Get(2).Name);
        s.WriteU64(kthreadd + 0x200 + SyntheticLinux.KthreadFullName, 0);
        Assert.Equal("kthreadd", Get(2).Name);

        // Hostile pointers (a wild worker, a wild kthread) leave the name at comm rather than failing the listing.
        s.WriteU64(kthread + SyntheticLinux.KthreadData, s.PageOffsetBase + (3UL << 30));
        Assert.Equal("kworker/0:0", Get(3).Name);
        s.WriteU64(t + SyntheticLinux.TaskWorkerPrivate, s.PageOffsetBase + (3UL << 30));
        Assert.Equal("kworker/0:0", Get(3).Name);
        s.WriteU64(t + SyntheticLinux.TaskWorkerPrivate, 0);
        Assert.Equal("kworker/0:0", Get(3).Name);
    }

    [Fact]
    public void FromLinux610WorkersAreNamedByTheirFullId()
    {
        // A kernel with format_worker_id (6.10+): the name is built from the worker's id and pool, not its comm.
        var s = new SyntheticLinux(moreFunctions: ["format_worker_id"]);
        LinuxKernel k = KernelLocator.Locate(s.Machine);
        ulong t = s.Tasks[3], kthread = t + 0x200, worker = t + 0x300, pool = t + 0x380, attrs = t + 0x3c0, wq = t + 0x400;
        s.WriteU32(t + SyntheticLinux.TaskFlags, 0x00200040u | 0x20u);
        s.WriteU64(t + SyntheticLinux.TaskWorkerPrivate, kthread);
        s.WriteU64(kthread + SyntheticLinux.KthreadData, worker);
        s.WriteU64(worker + SyntheticLinux.WorkerPool, pool);
        s.WriteU32(worker + SyntheticLinux.WorkerId, 1234);
        s.WriteU64(pool + SyntheticLinux.PoolAttrs, attrs);
        s.WriteU32(pool + SyntheticLinux.PoolCpu, uint.MaxValue); // cpu -1: an unbound pool, named by its id
        s.WriteU32(pool + SyntheticLinux.PoolId, 16);
        s.WriteVirtual(worker + SyntheticLinux.WorkerDesc, "flush-8:0\0"u8);
        s.WriteU64(worker + SyntheticLinux.WorkerCurrentWork, s.PageOffsetBase + 0x1234);

        string Name() => ProcessList.Read(k).Single(p => p.Pid == 3).Name;

        Assert.Equal("kworker/u16:1234+flush-8:0", Name()); // comm would have cut the id to "kworker/u16:123"

        s.WriteU32(pool + SyntheticLinux.PoolCpu, 1);
        s.WriteU32(attrs + SyntheticLinux.AttrsNice, unchecked((uint)-20));
        Assert.Equal("kworker/1:1234H+flush-8:0", Name());

        // A rescuer: kworker/R- and its workqueue's whole name (24 bytes, where comm keeps 15).
        s.WriteU64(worker + SyntheticLinux.WorkerPool, 0);
        s.WriteU64(worker + SyntheticLinux.WorkerRescueWq, wq);
        s.WriteVirtual(wq + SyntheticLinux.WqName, "ext4-rsv-conversion\0"u8);
        Assert.Equal("kworker/R-ext4-rsv-conversion", Name());

        // Neither pool nor workqueue: a dying worker.
        s.WriteU64(worker + SyntheticLinux.WorkerRescueWq, 0);
        Assert.Equal("kworker/dying", Name());
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
