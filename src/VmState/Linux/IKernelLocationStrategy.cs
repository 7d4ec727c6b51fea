namespace VmState.Linux;

/// <summary>
/// One way of finding the kernel's page-table root (<see cref="KernelLocationMethod"/>): VMCOREINFO, a vCPU's CR3,
/// or the banner found in raw physical memory. <see cref="KernelLocator"/> tries them in order and validates every
/// candidate by reading <c>linux_banner</c>.
/// </summary>
internal interface IKernelLocationStrategy
{
    /// <summary>The source this strategy uses (recorded in <see cref="LinuxKernel.Method"/>).</summary>
    KernelLocationMethod Method { get; }

    /// <summary>
    /// Tries the strategy's candidates in order: the first that validates is the kernel; null when none does. Every
    /// step, and the reason each candidate was rejected, is appended to <see cref="KernelLocationContext.Evidence"/>,
    /// which becomes the kernel's <see cref="LinuxKernel.Evidence"/> or the message when no strategy succeeds.
    /// </summary>
    /// <exception cref="KernelDataException">Guest data the strategy cannot get past (most problems are reasons, not exceptions).</exception>
    LinuxKernel? TryLocate(KernelLocationContext context);
}
