namespace VmState.Linux;

/// <summary>Which sources <see cref="KernelLocator"/> may use; all are on by default and tried in this order.</summary>
public sealed record KernelLocatorOptions
{
    /// <summary>The default: every source.</summary>
    public static KernelLocatorOptions Default { get; } = new();

    /// <summary>Use VMCOREINFO (from the input, the vmcoreinfo device, or a RAM scan).</summary>
    public bool UseVmcoreinfo { get; init; } = true;

    /// <summary>Use the vCPUs' CR3.</summary>
    public bool UseCpuState { get; init; } = true;

    /// <summary>Fall back to scanning physical memory for kallsyms and the banner (slow: reads all RAM).</summary>
    public bool UseBannerScan { get; init; } = true;
}
