namespace VmState.Linux;

/// <summary>One loaded kernel module, as <c>/proc/modules</c> shows it (<c>kernel/module/procfs.c m_show</c>).</summary>
/// <param name="Name">module->name.</param>
/// <param name="Address">Virtual address of the struct module.</param>
/// <param name="State">The module_state enumerator name without its prefix: "LIVE", "COMING", "GOING" or "UNFORMED".</param>
/// <param name="Base">Base of the module's core text (core_layout.base, or mem[MOD_TEXT].base from 6.4).</param>
/// <param name="Size">Total size as /proc/modules reports it (core + init layouts, or every mem[] region from 6.4).</param>
/// <param name="References">refcnt − MODULE_REF_BASE: the "used by" count.</param>
/// <param name="SymbolCount">kallsyms->num_symtab, the null symbol included.</param>
public sealed record LinuxModule(string Name, ulong Address, string State, ulong Base, ulong Size, int References, int SymbolCount);
