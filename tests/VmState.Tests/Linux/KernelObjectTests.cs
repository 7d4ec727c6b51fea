using VmState.Linux;

namespace VmState.Tests.Linux;

/// <summary>Typed objects over the synthetic kernel: members (anonymous, bitfields, through pointers), arrays, per-CPU variables.</summary>
public class KernelObjectTests
{
    private static readonly SyntheticLinux s_linux = new();
    private static readonly LinuxKernel s_kernel = KernelLocator.Locate(s_linux.Machine);

    [Fact]
    public void MembersStringsAndIntegers()
    {
        KernelObject init = s_kernel.Object("init_task");

        Assert.Equal("struct task_struct", init.TypeName);
        Assert.Equal(s_linux.InitTask, init.Address);
        Assert.Equal("swapper/0", init.Member("comm").ReadString());
        Assert.Equal('s', (char)init.Member("comm").Index(0).ToUInt64());
        Assert.Equal(0L, init.Member("pid").ToInt64());
        Assert.Equal(s_linux.InitTask + SyntheticLinux.TaskTasks, init.Member("tasks").Address);
        Assert.Equal("init_task.tasks.next", init.Member("tasks.next").Expression);
        Assert.Equal(s_linux.Tasks[1] + SyntheticLinux.TaskTasks, init.Member("tasks.next").ToUInt64());
    }

    [Fact]
    public void AnonymousMembersAndBitfields()
    {
        KernelObject t = s_kernel.ObjectAt(s_linux.Tasks[1], "struct task_struct");

        Assert.Equal(0x1122334455667788UL, t.Member("whole").ToUInt64());
        Assert.Equal(0x55667788UL, t.Member("lo").ToUInt64());
        Assert.Equal(0x11223344UL, t.Member("hi").ToUInt64());
        Assert.Equal(1UL, t.Member("in_execve").ToUInt64());
        Assert.Equal(5UL, t.Member("sched_policy_bits").ToUInt64());
        Assert.Equal(3u, t.Member("sched_policy_bits").BitSize);
    }

    [Fact]
    public void PointersAreFollowedForMembersAndByDeref()
    {
        KernelObject t = s_kernel.ObjectAt(s_linux.Tasks[100], "struct task_struct");

        Assert.Equal(1000UL, t.Member("real_cred").Member("uid.val").ToUInt64());
        Assert.Equal(1001UL, t.Member("real_cred").Deref().Member("gid.val").ToUInt64());
        Assert.Equal(1L, t.Member("real_parent").Member("pid").ToInt64());
        Assert.Equal("init", t.Member("real_parent").Member("comm").ReadString());
        Assert.Equal(2L, t.Member("signal").Member("nr_threads").ToInt64());
        // Tasks sit 0x1000 apart in the synthetic memory: 16 task_structs of 256 bytes.
        Assert.Equal("worker", t.Member("real_parent").Deref().AddressOf().Index(48).Member("comm").ReadString());
        Assert.False(t.Member("mm").IsNull);
        Assert.True(s_kernel.Object("init_task").Member("mm").IsNull);

        KernelDataException e = Assert.Throws<KernelDataException>(() => s_kernel.Object("init_task").Member("mm").Member("pgd"));
        Assert.Contains("init_task.mm is a NULL pointer", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CastsAndAddresses()
    {
        KernelObject t = s_kernel.ObjectAt(s_linux.Tasks[2], "struct task_struct");
        KernelObject p = t.AddressOf();

        Assert.Equal("struct task_struct *", p.TypeName);
        Assert.False(p.IsReference);
        Assert.Equal(s_linux.Tasks[2], p.ToUInt64());
        Assert.Equal("kthreadd", p.Member("comm").ReadString());
        Assert.Equal(s_linux.Tasks[2], p.Cast("unsigned long").ToUInt64());
        Assert.Equal(0xFFFFFFFFL & 2, t.Member("pid").Cast("unsigned int").ToInt64());
        Assert.Equal(s_linux.Tasks[2], s_kernel.ContainerOf(s_linux.Tasks[2] + SyntheticLinux.TaskTasks, "struct task_struct", "tasks").Address);
        Assert.StartsWith("(struct task_struct *)0x", p.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void PerCpuVariablesAddThePerCpuOffset()
    {
        Assert.Equal(2, s_kernel.CpuCount);
        Assert.Equal(s_linux.PerCpuOffset(1), s_kernel.PerCpuOffset(1));
        Assert.Equal("swapper/0", s_kernel.PerCpu("current_task", 0).Deref().Member("comm").ReadString());
        Assert.Equal(1L, s_kernel.PerCpu("current_task", 1).Member("pid").ToInt64());
        Assert.Throws<ArgumentOutOfRangeException>(() => s_kernel.PerCpuOffset(2));
        Assert.Contains("per-CPU", Assert.Throws<KernelDataException>(() => s_kernel.Object("current_task")).Message, StringComparison.Ordinal);
        Assert.Contains("Object(name, type)", Assert.Throws<KernelDataException>(() => s_kernel.Object("_end")).Message, StringComparison.Ordinal);
        Assert.Throws<KernelDataException>(() => s_kernel.PerCpu("init_task", 0));
    }

    [Fact]
    public void GlobalsFromTheDeclarationTable()
    {
        Assert.Equal(s_linux.PageOffsetBase, s_kernel.Object("page_offset_base").ToUInt64());
        Assert.Equal(2UL, s_kernel.Object("nr_cpu_ids").ToUInt64());
        Assert.Equal(s_linux.Banner, s_kernel.Object("linux_banner").ReadString().TrimEnd('\n'));
        Assert.Equal(s_linux.PerCpuOffset(1), s_kernel.Object("__per_cpu_offset", "unsigned long [2]").Index(1).ToUInt64());
        Assert.Throws<KernelDataException>(() => s_kernel.Object("__per_cpu_offset", "unsigned long [2]").Index(2));
    }

    [Fact]
    public void UnreadableAndWrongKindsFailClearly()
    {
        KernelObject wild = s_kernel.ObjectAt(s_linux.PageOffsetBase + (1UL << 31), "struct task_struct");
        KernelDataException e = Assert.Throws<KernelDataException>(() => wild.Member("pid").ToInt64());
        Assert.Contains(".pid", e.Message, StringComparison.Ordinal);
        Assert.Contains("not mapped", e.Message, StringComparison.Ordinal);

        KernelObject t = s_kernel.Object("init_task");
        Assert.Throws<KernelDataException>(() => t.ToUInt64());
        Assert.Throws<KernelDataException>(() => t.Member("pid").Deref());
        Assert.Throws<KernelDataException>(() => t.Member("pid").ReadString());
        Assert.Throws<KernelDataException>(() => t.Member("no_such_member"));
        Assert.Equal(VmStateObjectKind.Type, Assert.Throws<VmStateNotFoundException>(() => t.Cast("struct no_such_struct")).Kind);
    }
}
