namespace VmState.Linux;

/// <summary>
/// What reading a Linux kernel's memory needs that differs by architecture: kernel virtual reads (with the linear-map
/// and image shortcuts), a process's memory through its <c>mm-&gt;pgd</c>, and the task a CPU runs. The x86-64 kernel
/// keeps its own path inside <see cref="LinuxKernel"/>; an AArch64 kernel reads through
/// <see cref="Arm64KernelMemory"/>.
/// </summary>
internal interface IKernelMemoryModel
{
    /// <summary>Reads kernel virtual memory; returns the bytes read before the first unmapped byte.</summary>
    int Read(ulong address, Span<byte> destination);

    /// <summary>Reads process virtual memory through the page tables whose top level is <paramref name="pgd"/> (mm-&gt;pgd).</summary>
    int ReadUser(ulong pgd, ulong address, Span<byte> destination);

    /// <summary>The address of the task_struct CPU <paramref name="cpu"/> runs, when the CPU state tells it.</summary>
    ulong? CurrentTask(int cpu);
}
