namespace VmState.Linux;

/// <summary>
/// A kernel symbol found by <see cref="LinuxGuest.FindSymbols"/> or <see cref="LinuxGuest.SymbolAt"/>: the symbol,
/// how far into it an address is, and the module it belongs to.
/// </summary>
/// <param name="Symbol">The symbol.</param>
/// <param name="Offset">For a lookup by address, the address minus the symbol's; 0 in a list.</param>
/// <param name="Module">The loaded module whose symbol it is, or null for the kernel's own (kallsyms).</param>
public sealed record SymbolMatch(KernelSymbol Symbol, ulong Offset, string? Module)
{
    /// <summary>The address looked up (the symbol's address plus <see cref="Offset"/>).</summary>
    public ulong Address => Symbol.Address + Offset;
}
