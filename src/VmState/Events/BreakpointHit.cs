using VmState.Arch.X86;
using VmState.Linux;

namespace VmState.Events;

/// <summary>
/// One breakpoint or watchpoint hit, seen while the whole VM is stopped (QEMU's gdbstub is all-stop): the vCPU that
/// hit, its registers, the symbol at RIP and the task that was running on that vCPU, read from live guest memory.
/// </summary>
public sealed class BreakpointHit
{
    /// <summary>Hit number, from 1.</summary>
    public required long Sequence { get; init; }

    /// <summary>When the stop reply arrived.</summary>
    public required DateTimeOffset Time { get; init; }

    /// <summary>
    /// <see cref="System.Diagnostics.Stopwatch.GetTimestamp"/> when the stop reply was taken off the socket: a handler
    /// measures its latency with <see cref="System.Diagnostics.Stopwatch.GetElapsedTime(long)"/>.
    /// </summary>
    public long StopTimestamp { get; init; }

    /// <summary>The breakpoint or watchpoint.</summary>
    public required TraceBreakpoint Breakpoint { get; init; }

    /// <summary>The vCPU index (0-based).</summary>
    public required int Vcpu { get; init; }

    /// <summary>
    /// The vCPU's registers at the hit. For a watchpoint, RIP is that of the instruction after the access (QEMU
    /// reports a watchpoint once the accessing instruction has completed).
    /// </summary>
    public required X86GdbRegisters Registers { get; init; }

    /// <summary>The kernel symbol and offset at RIP (<c>name+0x0</c>), or null (user space, or no symbol).</summary>
    public string? Symbol { get; init; }

    /// <summary>The pid (thread id) of the task running on the vCPU, or null when it could not be read.</summary>
    public int? Pid { get; init; }

    /// <summary>The thread-group id (the process's pid) of that task, or null.</summary>
    public int? Tgid { get; init; }

    /// <summary>The task's <c>comm</c>, or null when it could not be read.</summary>
    public string? Comm { get; init; }

    /// <summary>The kernel address of the task's <c>task_struct</c>, or 0.</summary>
    public ulong TaskAddress { get; init; }

    /// <summary>Why the task could not be read, when it could not.</summary>
    public string? TaskProblem { get; init; }

    /// <summary>For a watchpoint: the data address QEMU reported (inside the watched range); else 0.</summary>
    public ulong DataAddress { get; init; }

    /// <summary>For a watchpoint: the watched bytes before the access (as last read), or null.</summary>
    public byte[]? OldValue { get; init; }

    /// <summary>For a watchpoint: the watched bytes after the access, or null when unreadable.</summary>
    public byte[]? NewValue { get; init; }

    internal LinuxKernel? Kernel { get; init; }

    /// <summary>
    /// Reads guest-virtual memory as the vCPU sees it: kernel addresses through the kernel's page tables, user
    /// addresses through the hit's CR3 (so the current process's memory). Returns the bytes read before the first
    /// unmapped byte.
    /// </summary>
    public int ReadMemory(ulong address, Span<byte> destination)
    {
        LinuxKernel kernel = Kernel ?? throw new InvalidOperationException("this hit has no kernel to read memory through");
        if (BreakpointHit.IsKernelAddress(address))
        {
            return kernel.Read(address, destination);
        }

        return new AddressSpace(kernel.Memory, kernel.Paging, TraceHitFilter.PageTableRoot(Registers.Cr3)).Read(address, destination);
    }

    /// <summary>
    /// True for an address in the kernel half of the address space: bit 63 set, with 4-level paging (kernel from
    /// 0xffff800000000000) and 5-level paging (from 0xff00000000000000) alike.
    /// </summary>
    public static bool IsKernelAddress(ulong address) => (long)address < 0;

    /// <summary>Reads the NUL-terminated string at <paramref name="address"/> (at most <paramref name="max"/> bytes, without the NUL).</summary>
    public bool TryReadString(ulong address, int max, out byte[] value)
    {
        value = [];
        if (address == 0)
        {
            return false;
        }

        var buffer = new byte[max];
        int n;
        try
        {
            n = ReadMemory(address, buffer);
        }
        catch (Exception e) when (e is VmStateException or IOException)
        {
            return false;
        }

        if (n == 0)
        {
            return false;
        }

        int nul = Array.IndexOf(buffer, (byte)0, 0, n);
        value = buffer[..(nul < 0 ? n : nul)];
        return true;
    }
}
