using VmState.Linux.Btf;

namespace VmState.Linux;

/// <summary>
/// What <c>vmstate kernel-info</c> shows beyond <see cref="LinuxKernel"/>'s own properties: uname fields, the boot
/// command line, the randomized memory bases and each CPU's per-CPU offset and current task. Each field is null
/// when the kernel lacks the symbol or the memory is unreadable (the summary never fails on one field).
/// </summary>
public sealed record KernelSummary
{
    /// <summary>init_uts_ns.name.nodename (the hostname).</summary>
    public string? Hostname { get; init; }

    /// <summary>init_uts_ns.name.version (e.g. "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)").</summary>
    public string? Version { get; init; }

    /// <summary>init_uts_ns.name.machine (e.g. "x86_64").</summary>
    public string? Machine { get; init; }

    /// <summary>saved_command_line: the kernel command line.</summary>
    public string? CommandLine { get; init; }

    /// <summary>Value of page_offset_base (the direct map).</summary>
    public ulong? PageOffsetBase { get; init; }

    /// <summary>Value of vmalloc_base.</summary>
    public ulong? VmallocBase { get; init; }

    /// <summary>Value of vmemmap_base.</summary>
    public ulong? VmemmapBase { get; init; }

    /// <summary>Per CPU: __per_cpu_offset[cpu] and the task running there (pid and comm), when readable.</summary>
    public IReadOnlyList<(int Cpu, ulong? PerCpuOffset, int? Pid, string? Comm)> Cpus { get; init; } = [];

    /// <summary>Size in bytes of the vmlinux BTF, or null when it could not be loaded.</summary>
    public int? BtfBytes { get; init; }

    /// <summary>Number of vmlinux BTF types.</summary>
    public int? BtfTypes { get; init; }

    /// <summary>Why the BTF could not be loaded, when it could not.</summary>
    public string? BtfProblem { get; init; }

    /// <summary>Reads the summary.</summary>
    public static KernelSummary Read(LinuxKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        BtfTypes? types = null;
        string? btfProblem = null;
        try
        {
            types = kernel.Types;
        }
        catch (Exception e) when (e is KernelDataException or IO.VmStateFormatException)
        {
            btfProblem = e.Message;
        }

        var cpus = new List<(int, ulong?, int?, string?)>();
        for (int cpu = 0; cpu < kernel.CpuCount && cpu < 4096; cpu++)
        {
            ulong? offset = Try<ulong?>(() => kernel.PerCpuOffset(cpu));
            (int? pid, string? comm) = types is null ? (null, null) : CurrentTask(kernel, cpu);
            cpus.Add((cpu, offset, pid, comm));
        }

        return new KernelSummary
        {
            Hostname = types is null ? null : Try(() => kernel.Object("init_uts_ns").Member("name.nodename").ReadString()),
            Version = types is null ? null : Try(() => kernel.Object("init_uts_ns").Member("name.version").ReadString()),
            Machine = types is null ? null : Try(() => kernel.Object("init_uts_ns").Member("name.machine").ReadString()),
            CommandLine = Try(() => kernel.ReadCString(kernel.ReadU64(kernel.Symbols.AddressOf("saved_command_line")), 4096, "saved_command_line")),
            PageOffsetBase = Value(kernel, "page_offset_base"),
            VmallocBase = Value(kernel, "vmalloc_base"),
            VmemmapBase = Value(kernel, "vmemmap_base"),
            Cpus = cpus,
            BtfBytes = types?.Length,
            BtfTypes = types?.Count,
            BtfProblem = btfProblem,
        };
    }

    /// <summary>
    /// The task running on <paramref name="cpu"/>: per-CPU <c>current_task</c>, or <c>pcpu_hot.current_task</c> on
    /// the kernels (≈6.2–6.14) that moved it into <c>pcpu_hot</c> (x86 <c>asm/current.h</c>).
    /// </summary>
    private static (int?, string?) CurrentTask(LinuxKernel kernel, int cpu)
    {
        KernelObject? task = Try(() => kernel.CurrentTask(cpu));
        if (task is null)
        {
            return (null, null);
        }

        return ((int?)Try(() => (long?)task.Member("pid").ToInt64()), Try(() => task.Member("comm").ReadString()));
    }

    private static ulong? Value(LinuxKernel kernel, string symbol) =>
        kernel.Symbols.TryGetAddress(symbol, out ulong at) && kernel.TryReadU64(at, out ulong v) ? v : null;

    private static T? Try<T>(Func<T> read)
    {
        try
        {
            return read();
        }
        catch (Exception e) when (e is KernelDataException or IO.VmStateFormatException or VmStateNotFoundException or ArgumentException)
        {
            return default;
        }
    }
}
