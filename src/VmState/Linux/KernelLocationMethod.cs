namespace VmState.Linux;

/// <summary>Which source gave the kernel page-table root (see <c>profile-free-linux.md</c> §0 step 3).</summary>
public enum KernelLocationMethod
{
    /// <summary>VMCOREINFO: <c>SYMBOL(init_top_pgt)</c> converted with <c>NUMBER(phys_base)</c>.</summary>
    Vmcoreinfo,

    /// <summary>A vCPU's CR3 with the PCID bits and the PTI user-half bit 12 cleared.</summary>
    ControlRegister,

    /// <summary>No CPU state: kallsyms found in raw physical memory, then the <c>linux_banner</c> hit that makes <c>init_top_pgt</c> translate it back.</summary>
    Banner,
}
