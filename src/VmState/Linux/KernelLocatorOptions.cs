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

    /// <summary>
    /// A System.map file to take the symbols from instead of the in-memory kallsyms (relocated by the KASLR offset
    /// found in memory; checked by reading linux_banner through it).
    /// </summary>
    public string? SystemMapPath { get; init; }

    /// <summary>A vmlinux carrying a .BTF section, or a raw BTF file (/sys/kernel/btf/vmlinux), to take the types from.</summary>
    public string? BtfPath { get; init; }
}
