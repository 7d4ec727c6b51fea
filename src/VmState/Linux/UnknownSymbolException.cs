namespace VmState.Linux;

/// <summary>A symbol expression names a symbol the guest kernel's symbol table does not have.</summary>
public sealed class UnknownSymbolException : VmStateNotFoundException
{
    /// <summary>Creates the exception for <paramref name="name"/>.</summary>
    public UnknownSymbolException(string name)
        : base(VmStateObjectKind.Symbol, name, $"kallsyms has no symbol '{name}'")
    {
    }
}
