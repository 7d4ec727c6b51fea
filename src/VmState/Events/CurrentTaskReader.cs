using System.Buffers.Binary;
using VmState.Linux;

namespace VmState.Events;

/// <summary>
/// The task running on a stopped vCPU, read in two memory reads per hit: the <c>current_task</c> pointer at the
/// vCPU's per-CPU base plus the variable's offset (per-CPU <c>current_task</c>, or <c>pcpu_hot.current_task</c>
/// on about 6.2–6.14), then one block of <c>task_struct</c> that spans pid, tgid and comm. The per-CPU base is the
/// GS base of a vCPU in kernel mode (the kernel keeps <c>this_cpu_off</c> there), the KERNEL_GS_BASE MSR in user mode
/// (swapped in by <c>swapgs</c>), else <c>__per_cpu_offset[cpu]</c>. Symbols and BTF offsets are resolved once.
/// </summary>
internal sealed class CurrentTaskReader
{
    private readonly LinuxKernel _kernel;
    private readonly ulong _currentOffset;
    private readonly int _pid;
    private readonly int _tgid;
    private readonly int _comm;
    private readonly int _blockStart;
    private readonly byte[] _block;
    private readonly Dictionary<int, ulong> _perCpu = [];

    public CurrentTaskReader(LinuxKernel kernel)
    {
        _kernel = kernel;
        int task = kernel.Types.FindType("struct task_struct");
        if (kernel.Symbols.TryGetAddress("current_task", out ulong current))
        {
            _currentOffset = current;
        }
        else
        {
            int hot = kernel.Types.FindType("struct pcpu_hot");
            _currentOffset = kernel.Symbols.AddressOf("pcpu_hot") + kernel.Types.Member(hot, "current_task").ByteOffset;
        }

        _pid = (int)kernel.Types.Member(task, "pid").ByteOffset;
        _tgid = (int)kernel.Types.Member(task, "tgid").ByteOffset;
        _comm = (int)kernel.Types.Member(task, "comm").ByteOffset;
        _blockStart = Math.Min(_pid, Math.Min(_tgid, _comm));
        int end = Math.Max(Math.Max(_pid, _tgid) + 4, _comm + 16);
        _block = new byte[end - _blockStart];
    }

    /// <summary>The current task of <paramref name="vcpu"/>: its address, pid, tgid and comm.</summary>
    /// <exception cref="KernelDataException">The pointer or the task cannot be read.</exception>
    public (ulong Task, int Pid, int Tgid, string Comm) Read(int vcpu, X86GdbRegisters regs)
    {
        ulong perCpu = regs.IsKernelMode ? regs.GsBase : regs.KernelGsBase;
        if (!BreakpointHit.IsKernelAddress(perCpu))
        {
            // Between swapgs and the entry code's first per-CPU access, or a kernel without SMP per-CPU bases.
            if (!_perCpu.TryGetValue(vcpu, out perCpu))
            {
                perCpu = _kernel.PerCpuOffset(vcpu);
                _perCpu[vcpu] = perCpu;
            }
        }

        Span<byte> pointer = stackalloc byte[8];
        _kernel.ReadExactly(perCpu + _currentOffset, pointer, "current_task");
        ulong task = BinaryPrimitives.ReadUInt64LittleEndian(pointer);
        _kernel.ReadExactly(task + (ulong)_blockStart, _block, "task_struct of the current task");
        ReadOnlySpan<byte> b = _block;
        ReadOnlySpan<byte> comm = b.Slice(_comm - _blockStart, 16);
        int nul = comm.IndexOf((byte)0);
        return (task,
            BinaryPrimitives.ReadInt32LittleEndian(b[(_pid - _blockStart)..]),
            BinaryPrimitives.ReadInt32LittleEndian(b[(_tgid - _blockStart)..]),
            System.Text.Encoding.UTF8.GetString(nul < 0 ? comm : comm[..nul]));
    }
}
